package tui

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"github.com/layercast/layercast/orchestrator"
)

// fleetEvents is a job on n hosts in every state, each downloading host
// with five layers in flight.
func fleetEvents(n int, at time.Time) []orchestrator.Event {
	layers := []orchestrator.LayerInfo{
		{Digest: "sha256:" + strings.Repeat("a", 64), Size: 80e6},
		{Digest: "sha256:" + strings.Repeat("b", 64), Size: 120e6},
		{Digest: "sha256:" + strings.Repeat("c", 64), Size: 50e6},
		{Digest: "sha256:" + strings.Repeat("d", 64), Size: 30e6},
		{Digest: "sha256:" + strings.Repeat("e", 64), Size: 20e6},
	}
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("node-%03d", i+1)
	}
	evs := []orchestrator.Event{{Time: at, Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{
		ID: "bench", Image: "lab/app:v3", Mode: "p2p", Size: 300e6, Layers: layers, Hosts: hosts,
	}}}
	states := []orchestrator.HostState{
		orchestrator.HostConnecting, orchestrator.HostUploading, orchestrator.HostChecking,
		orchestrator.HostDownloading, orchestrator.HostDownloading, orchestrator.HostDownloading,
		orchestrator.HostImporting, orchestrator.HostDone, orchestrator.HostFailed,
	}
	for i, h := range hosts {
		st := states[i%len(states)]
		e := orchestrator.Event{Time: at.Add(time.Duration(i) * time.Millisecond), Kind: orchestrator.EventHostState, Host: h, State: st}
		if st == orchestrator.HostFailed {
			e.Message = "connect: dial tcp 10.99.0.1:22: i/o timeout"
		}
		evs = append(evs, e)
		p := &orchestrator.HostProgress{Total: 300e6, Needed: 300e6, Rate: float64(5e6 + i*1e4), Peers: i % 12}
		for k, l := range layers {
			done := l.Size * int64((i*7+k*13)%100) / 100
			p.Layers = append(p.Layers, orchestrator.LayerProgress{Digest: l.Digest, Done: done, Total: l.Size})
			p.Done += done
		}
		p.FromPeers, p.FromSeeder = p.Done*8/10, p.Done*2/10
		evs = append(evs, orchestrator.Event{Time: e.Time, Kind: orchestrator.EventHostProgress, Host: h, Progress: p})
		evs = append(evs, orchestrator.Event{Time: e.Time, Kind: orchestrator.EventHostLog, Host: h, Message: "fetching 5 layers"})
	}
	evs = append(evs, orchestrator.Event{Time: at, Kind: orchestrator.EventSeeder, Seeder: &orchestrator.SeederStats{Uploaded: 900e6, Rate: 40e6, Peers: 30}})
	return evs
}

// runScreenModel is the console showing the run screen of a job on n
// hosts, styled for profile.
func runScreenModel(tb testing.TB, n, width, height int, profile termenv.Profile) model {
	tb.Helper()
	at := recordingStart
	cfg := testConfig(&ReplayEngine{}, labCatalog(), at.Add(30*time.Second))
	cfg.Renderer = lipgloss.NewRenderer(io.Discard)
	cfg.Renderer.SetColorProfile(profile)
	m := newModel(context.Background(), cfg.withDefaults(io.Discard))
	m.c.width, m.c.height = width, height
	j := newJobState(1, cfg.Options, Inventory{}, nil)
	j.cancel = func() {}
	m.job, m.screen = j, screenRun
	next, _ := m.jobEvents(jobEventsMsg{seq: j.seq, events: fleetEvents(n, at)})
	return next.(model)
}

// BenchmarkRunView500Hosts renders one frame of the run screen of a job on
// 500 hosts, at 80x24 and 200x60, without colour and in true colour.
// Rerun: go test ./tui -run '^$' -bench RunView -benchmem
func BenchmarkRunView500Hosts(b *testing.B) {
	for _, size := range [][2]int{{80, 24}, {200, 60}} {
		for _, p := range []struct {
			name    string
			profile termenv.Profile
		}{{"ascii", termenv.Ascii}, {"truecolor", termenv.TrueColor}} {
			b.Run(fmt.Sprintf("%dx%d/%s", size[0], size[1], p.name), func(b *testing.B) {
				m := runScreenModel(b, 500, size[0], size[1], p.profile)
				if v := m.View(); !strings.Contains(v, "node-") || !strings.Contains(v, "of 500") {
					b.Fatalf("run screen does not show the fleet:\n%s", v)
				}
				b.ReportAllocs()
				for b.Loop() {
					_ = m.View()
				}
			})
		}
	}
}

// BenchmarkRunUpdate500Hosts folds one batch of progress from 500 hosts
// into the model: apply, aggregate, filter and sort.
func BenchmarkRunUpdate500Hosts(b *testing.B) {
	m := runScreenModel(b, 500, 200, 60, termenv.TrueColor)
	var batch []orchestrator.Event
	for _, e := range fleetEvents(500, recordingStart) {
		if e.Kind == orchestrator.EventHostProgress {
			batch = append(batch, e)
		}
	}
	msg := jobEventsMsg{seq: m.job.seq, events: batch}
	b.ReportAllocs()
	for b.Loop() {
		next, _ := m.Update(msg)
		m = next.(model)
	}
}

package tui

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/exp/teatest"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

// engineFunc adapts a function to Engine.
type engineFunc func(context.Context, orchestrator.Options, orchestrator.Sink) (*orchestrator.Report, error)

func (f engineFunc) Run(ctx context.Context, o orchestrator.Options, s orchestrator.Sink) (*orchestrator.Report, error) {
	return f(ctx, o, s)
}

// allFrames keeps every frame the model under test rendered.
type allFrames struct {
	tea.Model
	mu     *sync.Mutex
	frames *[]string
	last   *latestFrame
}

func (a allFrames) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	m, cmd := a.Model.Update(msg)
	v := m.View()
	a.mu.Lock()
	*a.frames = append(*a.frames, v)
	a.mu.Unlock()
	a.last.set(v)
	return allFrames{Model: m, mu: a.mu, frames: a.frames, last: a.last}, cmd
}

// TestConsole_HostileHostTextRendersHarmless runs the real engine on hosts
// that put escape sequences (OSC, CSI, C1, bidi) into every field they
// fill, and walks the console through the run, the summary and every
// host's detail: no frame holds a control or bidi character, and the
// hosts' words show, escaped.
func TestConsole_HostileHostTextRendersHarmless(t *testing.T) {
	hj, err := orchestrator.NewHostileJob(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	eng := engineFunc(func(ctx context.Context, o orchestrator.Options, s orchestrator.Sink) (*orchestrator.Report, error) {
		o.InventoryPath, o.Image, o.NoNodeCache = hj.Options.InventoryPath, hj.Options.Image, true
		return hj.Engine.Run(ctx, o, s)
	})
	var hosts []InventoryHost
	for i := 1; i <= 5; i++ {
		hosts = append(hosts, InventoryHost{Name: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("192.0.2.%d", 10+i)})
	}
	cat := &FakeCatalog{
		Inventories: map[string]Inventory{labInv: {Hosts: hosts}},
		ImageList:   []Image{{Ref: "lab/hostile:v1", Size: 11000, Layers: 2}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var mu sync.Mutex
	var frames []string
	last := &latestFrame{}
	m := allFrames{Model: New(ctx, testConfig(eng, cat, time.Now())), mu: &mu, frames: &frames, last: last}
	tm := &console{TestModel: teatest.NewTestModel(t, m, teatest.WithInitialTermSize(testWidth, testHeight)), frame: last}

	waitFor(t, tm, "5 of 5 selected", "1 local image")
	press(tm, "lab/hostile:v1", "enter")
	waitFor(t, tm, "4 of 5 failed")
	// Every host's detail, in the summary's order.
	seen := map[string]bool{}
	for row := range 5 {
		for range row {
			press(tm, "down")
		}
		press(tm, "enter")
		waitFor(t, tm, "host h", "LOG", "esc back")
		for i := 1; i <= 5; i++ {
			if strings.Contains(tm.frame.get(), fmt.Sprintf("host h%d ", i)) {
				seen[fmt.Sprintf("h%d", i)] = true
			}
		}
		press(tm, "esc")
		for deadline := time.Now().Add(10 * time.Second); strings.Contains(tm.frame.get(), "esc back"); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the detail did not close")
			}
		}
		for range row {
			press(tm, "up")
		}
	}
	if len(seen) != 5 {
		t.Errorf("details seen of %v, want all 5 hosts", seen)
	}
	finalView(t, tm)

	mu.Lock()
	defer mu.Unlock()
	shown := false
	for _, f := range frames {
		if !textfmt.Harmless(f) {
			t.Fatalf("a frame holds controls or bidi characters:\n%q", f)
		}
		shown = shown || strings.Contains(f, `\x1b]0;owned`)
	}
	if !shown {
		t.Errorf("no frame shows the hosts' escapes as text; last frame:\n%s", frames[len(frames)-1])
	}
	t.Logf("%d frames checked", len(frames))
}

func TestSummaryScreen_SaysWhenTheImageWasNotVerified(t *testing.T) {
	rec := Recording{Events: []orchestrator.Event{
		{Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{ID: "r1", Image: "lab/app:v3", Mode: "registry", Hosts: []string{"h01"}}},
		{Kind: orchestrator.EventHostState, Host: "h01", State: orchestrator.HostDone},
		{Kind: orchestrator.EventJobDone, Report: &orchestrator.Report{JobID: "r1", Image: "lab/app:v3", Mode: "registry",
			Unverified: "the bastion has no copy of lab/app:v3 to compare with",
			Hosts:      []orchestrator.HostResult{{Host: "h01", State: orchestrator.HostDone, Unverified: true}}}},
	}}
	tm := startConsole(t, testConfig(&ReplayEngine{Recordings: []Recording{rec}}, labCatalog(), recordingStart))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "lab/app:v3", "enter")
	waitFor(t, tm, "1 done", "⚠ not verified: the bastion has no copy of lab/app:v3")
	finalView(t, tm)
}

func TestConsole_ShowsIgnoredInventorySettings(t *testing.T) {
	cat := labCatalog()
	inv := cat.Inventories[labInv]
	inv.Ignored = []string{"ansible_python_interpreter: not used by layercast (h01)"}
	cat.Inventories[labInv] = inv
	rec := Recording{Events: []orchestrator.Event{
		{Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{ID: "i1", Image: "lab/app:v3", Hosts: []string{"h01"}, Ignored: inv.Ignored}},
		{Kind: orchestrator.EventHostState, Host: "h01", State: orchestrator.HostConnecting},
		{Kind: orchestrator.EventJobDone, Report: &orchestrator.Report{Cancelled: true}},
	}, HoldFrom: 2}
	tm := startConsole(t, testConfig(&ReplayEngine{Recordings: []Recording{rec}}, cat, recordingStart))
	waitFor(t, tm, "8 of 8 selected", "the inventory holds 1 setting layercast does not use", "ansible_python_interpreter")
	press(tm, "lab/app:v3", "enter")
	waitFor(t, tm, "1 connecting", "inventory: ignored: ansible_python_interpreter")
	finalView(t, tm)
}

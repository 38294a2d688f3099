package tui

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/muesli/termenv"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

func progress(host string, done int64) orchestrator.Event {
	return orchestrator.Event{Kind: orchestrator.EventHostProgress, Host: host,
		Progress: &orchestrator.HostProgress{Done: done, Total: 100}}
}

func TestEventQueue_KeepsLatestProgressPerHostAndOrderOfTheRest(t *testing.T) {
	q := newEventQueue()
	q.Emit(orchestrator.Event{Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostDownloading})
	for i := range 1000 {
		q.Emit(progress("a", int64(i)))
		q.Emit(progress("b", int64(2*i)))
		q.Emit(orchestrator.Event{Kind: orchestrator.EventSeeder, Seeder: &orchestrator.SeederStats{Uploaded: int64(i)}})
	}
	q.Emit(orchestrator.Event{Kind: orchestrator.EventHostLog, Host: "b", Message: "hello"})
	q.Emit(orchestrator.Event{Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostDone})

	evs, res := q.take(time.Now())
	if res != nil {
		t.Fatal("result before finish")
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, string(e.Kind)+":"+e.Host)
	}
	want := "host_state:a host_progress:a host_progress:b seeder: host_log:b host_state:a"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("batch = %s\nwant    %s", got, want)
	}
	if evs[1].Progress.Done != 999 || evs[2].Progress.Done != 1998 || evs[3].Seeder.Uploaded != 999 {
		t.Errorf("kept snapshots %d, %d, %d; want the latest 999, 1998, 999",
			evs[1].Progress.Done, evs[2].Progress.Done, evs[3].Seeder.Uploaded)
	}
	// The next batch starts empty, and a new snapshot is not merged into
	// one already taken.
	q.Emit(progress("a", 1))
	evs, _ = q.take(time.Now())
	if len(evs) != 1 || evs[0].Progress.Done != 1 {
		t.Fatalf("second batch = %+v", evs)
	}
}

func TestWaitEvents_DeliversResultAfterEveryEvent(t *testing.T) {
	q := newEventQueue()
	eng := &ReplayEngine{Recordings: []Recording{{Events: []orchestrator.Event{
		{Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{Hosts: []string{"a"}}},
		{Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostDone},
		{Kind: orchestrator.EventJobDone, Report: &orchestrator.Report{JobID: "j1"}},
	}}}}
	run := runEngine(context.Background(), eng, orchestrator.Options{}, q, nil)
	go run()
	var got []orchestrator.Event
	for {
		msg := waitEvents(q, 7, time.Millisecond)().(jobEventsMsg)
		if msg.seq != 7 {
			t.Fatalf("seq = %d", msg.seq)
		}
		got = append(got, msg.events...)
		if msg.result != nil {
			if msg.result.report == nil || msg.result.report.JobID != "j1" || msg.result.err != nil {
				t.Fatalf("result = %+v", msg.result)
			}
			break
		}
	}
	if len(got) != 3 || got[2].Kind != orchestrator.EventJobDone {
		t.Fatalf("events before the result: %+v", got)
	}
}

type panickyEngine struct{}

func (panickyEngine) Run(context.Context, orchestrator.Options, orchestrator.Sink) (*orchestrator.Report, error) {
	var m map[string]int
	m["boom"]++ // a bug in the engine
	return nil, nil
}

func TestRunEngine_TurnsEnginePanicIntoError(t *testing.T) {
	q := newEventQueue()
	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, nil))
	runEngine(context.Background(), panickyEngine{}, orchestrator.Options{}, q, logger)()
	_, res := q.take(time.Now())
	if res == nil || res.err == nil || !strings.Contains(res.err.Error(), "engine failed unexpectedly") {
		t.Fatalf("result = %+v, want an error", res)
	}
	if !strings.Contains(log.String(), "engine panicked") || !strings.Contains(log.String(), "panickyEngine.Run") {
		t.Errorf("the log lacks the panic and its stack:\n%s", log.String())
	}
}

func TestJobState_AHostSetUpAgainLosesTheLostNodesProgress(t *testing.T) {
	j := newJobState(1, orchestrator.Options{}, Inventory{}, nil)
	t0 := recordingStart
	for _, e := range []orchestrator.Event{
		{Time: t0, Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{Size: 100, Hosts: []string{"a"}}},
		{Time: t0, Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostConnecting},
		{Time: t0.Add(time.Second), Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostDownloading},
		{Time: t0.Add(time.Second), Kind: orchestrator.EventHostProgress, Host: "a", Progress: &orchestrator.HostProgress{Done: 40, Total: 100, Rate: 10}},
		{Time: t0.Add(2 * time.Second), Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostConnecting},
	} {
		j.apply(e, t0)
	}
	j.refresh()
	if a := j.byName["a"]; a.hasProg || j.doneBytes != 0 || j.rate != 0 {
		t.Errorf("after a new connection: progress %v %+v, done bytes %d, rate %v; want none", a.hasProg, a.prog, j.doneBytes, j.rate)
	}
}

func TestJobState_AggregatesFollowEvents(t *testing.T) {
	j := newJobState(1, orchestrator.Options{}, Inventory{}, nil)
	t0 := recordingStart
	for _, e := range []orchestrator.Event{
		{Time: t0, Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{Size: 100, Hosts: []string{"a", "b", "c"}}},
		{Time: t0.Add(time.Second), Kind: orchestrator.EventHostState, Host: "a", State: orchestrator.HostDownloading},
		{Time: t0.Add(time.Second), Kind: orchestrator.EventHostProgress, Host: "a", Progress: &orchestrator.HostProgress{Done: 40, Total: 100, Rate: 10, FromPeers: 30, FromSeeder: 10}},
		{Time: t0.Add(2 * time.Second), Kind: orchestrator.EventHostState, Host: "b", State: orchestrator.HostFailed, Message: "auth refused"},
		{Time: t0.Add(3 * time.Second), Kind: orchestrator.EventHostState, Host: "c", State: orchestrator.HostDone},
		{Time: t0.Add(4 * time.Second), Kind: orchestrator.EventTeardown, Host: "b"},
	} {
		j.apply(e, t0)
	}
	j.refresh()
	if j.counts[orchestrator.HostDownloading] != 1 || j.counts[orchestrator.HostFailed] != 1 || j.counts[orchestrator.HostDone] != 1 {
		t.Errorf("counts = %v", j.counts)
	}
	// The failed host's bytes are out of the total; the done host counts whole.
	if j.doneBytes != 140 || j.allBytes != 200 || j.rate != 10 {
		t.Errorf("done/all/rate = %d/%d/%v, want 140/200/10", j.doneBytes, j.allBytes, j.rate)
	}
	if d, ok := j.eta(); !ok || d != 6*time.Second {
		t.Errorf("eta = %v %v, want 6s", d, ok)
	}
	a, b := j.byName["a"], j.byName["b"]
	if share, _ := a.peerShare(); share != 0.75 {
		t.Errorf("peer share = %v, want 0.75", share)
	}
	if b.reason != "auth refused" || !b.tornDown || b.elapsed(t0.Add(time.Hour)) != 0 {
		t.Errorf("failed host: reason %q torn down %v elapsed %v", b.reason, b.tornDown, b.elapsed(t0.Add(time.Hour)))
	}
	if got := a.elapsed(t0.Add(5 * time.Second)); got != 4*time.Second {
		t.Errorf("running host elapsed = %v, want 4s", got)
	}
	if got := j.failedHosts(); strings.Join(got, ",") != "a,b" {
		t.Errorf("failed hosts before the report = %v, want a,b", got)
	}
	j.finish(jobResult{report: &orchestrator.Report{Hosts: []orchestrator.HostResult{
		{Host: "a", State: orchestrator.HostDone}, {Host: "b", State: orchestrator.HostFailed, Error: "auth refused"},
		{Host: "c", State: orchestrator.HostDone},
	}}}, t0.Add(10*time.Second))
	if got := j.failedHosts(); strings.Join(got, ",") != "b" {
		t.Errorf("failed hosts from the report = %v, want b", got)
	}
	if j.byName["a"].state != orchestrator.HostDone {
		t.Errorf("report did not settle host a: %s", j.byName["a"].state)
	}
}

func TestFormat_SizesRatesAndNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{textfmt.Bytes(0), "0 B"},
		{textfmt.Bytes(999), "999 B"},
		{textfmt.Bytes(4_200_000), "4.2 MB"},
		{textfmt.Bytes(300_000_000), "300 MB"},
		{textfmt.Bytes(2_400_000_000), "2.4 GB"},
		{textfmt.Ratio(186_000_000, 300_000_000), "186/300 MB"},
		{textfmt.Ratio(0, 300_000_000), "0/300 MB"},
		{textfmt.Rate(11_200_000), "11 MB/s"},
		{textfmt.Rate(0), "–"},
		{formatDuration(83 * time.Second), "1:23"},
		{formatDuration(3723 * time.Second), "1:02:03"},
		{formatPercent(0.999), "99%"},
		{shortDigest("sha256:4f4fb700ef54461cfa02"), "4f4fb700ef54"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if !naturalLess("h2", "h10") || naturalLess("h10", "h2") || !naturalLess("a", "b") || naturalLess("h01", "h01") {
		t.Error("naturalLess does not order numbers by value")
	}
}

func TestConsole_FramesFitEverySize(t *testing.T) {
	for _, size := range [][2]int{{80, 24}, {100, 30}, {160, 50}, {80, 24}} {
		m := runScreenModel(t, 500, 80, 24, termenv.Ascii)
		next, _ := m.Update(windowSize(size[0], size[1]))
		m = next.(model)
		for _, screen := range []screen{screenSetup, screenRun, screenSummary} {
			m.screen = screen
			if screen == screenSummary {
				m.summary = m.summary.reset(m.c, m.job)
			}
			frame := m.View()
			lines := strings.Split(frame, "\n")
			if len(lines) > size[1] {
				t.Errorf("%dx%d screen %d: %d lines", size[0], size[1], screen, len(lines))
			}
			for _, l := range lines {
				if w := lipgloss.Width(l); w > size[0] {
					t.Errorf("%dx%d screen %d: line of %d cells: %q", size[0], size[1], screen, w, l)
				}
			}
		}
		// The run screen uses the height it has: more rows on a taller terminal.
		m.screen = screenRun
		if rows := m.run.tableRows(m.c); rows != size[1]-runChromeLines-logPaneLines-1 {
			t.Errorf("%dx%d: %d table rows", size[0], size[1], rows)
		}
	}
}

func TestConsole_NoColorRendersPlainText(t *testing.T) {
	env := func(noColor bool) termenv.Environ {
		vars := map[string]string{"TERM": "xterm-256color", "COLORTERM": "truecolor"}
		if noColor {
			vars["NO_COLOR"] = "1"
		}
		return fakeEnv(vars)
	}
	for _, noColor := range []bool{false, true} {
		r := lipgloss.NewRenderer(os.Stdout, termenv.WithEnvironment(env(noColor)), termenv.WithTTY(true), termenv.WithUnsafe())
		r.SetHasDarkBackground(true) // no terminal to ask
		cfg := testConfig(&ReplayEngine{}, labCatalog(), recordingStart)
		cfg.Renderer = r
		m := newModel(context.Background(), cfg.withDefaults(os.Stdout))
		cat := labCatalog()
		inv, _ := cat.LoadInventory(labInv)
		next, _ := m.Update(inventoryMsg{path: labInv, inv: inv})
		frame := next.View()
		if escapes := strings.Contains(frame, "\x1b["); escapes == noColor {
			t.Errorf("NO_COLOR=%v: frame has escape sequences: %v", noColor, escapes)
		}
		if !strings.Contains(ansi.Strip(frame), "[x] h01") {
			t.Errorf("NO_COLOR=%v: selection not readable as text:\n%s", noColor, frame)
		}
	}
}

type fakeEnv map[string]string

func (e fakeEnv) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e fakeEnv) Getenv(k string) string { return e[k] }

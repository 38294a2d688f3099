package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// oversizedProgress is one event line just under jobspec.MaxLine: a
// progress event whose layer list is "{}," over and over.
func oversizedProgress() []byte {
	head, tail := `{"kind":"progress","progress":{"layers":[`, `{}]}}`
	n := (jobspec.MaxLine - len(head) - len(tail) - 1) / 3
	return []byte(head + strings.Repeat("{},", n) + tail)
}

// allocated returns the bytes fn allocates.
func allocated(fn func()) uint64 {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestNodeProgress_OversizedEventIsDroppedWithoutLargeAllocation(t *testing.T) {
	line := oversizedProgress()
	var plain jobspec.Event
	naive := allocated(func() {
		if err := json.Unmarshal(line, &plain); err != nil {
			t.Fatal(err)
		}
	})
	entries := len(plain.Progress.Layers)
	plain = jobspec.Event{}
	var ev nodeEvent
	bounded := allocated(func() {
		ev = nodeEvent{Progress: boundedProgress{max: 5}}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("a %.1f MiB line of {}: decoded as jobspec.Event: %d layer entries, %.1f MiB allocated; bounded: %.1f KiB allocated",
		float64(len(line))/(1<<20), entries, float64(naive)/(1<<20), float64(bounded)/(1<<10))
	if !errors.Is(ev.Progress.err, errDropped) || ev.Progress.p != nil {
		t.Errorf("oversized progress not dropped: %+v", ev.Progress)
	}
	if bounded > 256<<10 {
		t.Errorf("the bounded decode allocated %d bytes for a dropped event, want under 256 KiB", bounded)
	}
}

// followLines feeds lines to a followed node and returns the book's
// progress events for the host.
func followLines(t *testing.T, m layerMatcher, lines ...[]byte) []*HostProgress {
	t.Helper()
	var mu sync.Mutex
	var got []*HostProgress
	book := newHostBook([]string{"h1"}, time.Now, func(e Event) {
		if e.Kind == EventHostProgress {
			mu.Lock()
			got = append(got, e.Progress)
			mu.Unlock()
		}
	})
	p := openssh.NewFakeProcess()
	go func() {
		for _, l := range lines {
			p.StdoutWriter().Write(append(l, '\n'))
		}
		p.Exit(nil)
	}()
	go drainStdin(p)
	n := followNode(p, "h1", slog.New(slog.DiscardHandler), nodeOutlets{book: book, emit: func(Event) {}, layers: m})
	<-n.exited
	mu.Lock()
	defer mu.Unlock()
	return got
}

func drainStdin(p *openssh.FakeProcess) {
	var b bytes.Buffer
	_, _ = b.ReadFrom(p.StdinReader())
}

func progressLine(t *testing.T, p jobspec.Progress) []byte {
	t.Helper()
	b, err := json.Marshal(jobspec.Event{Kind: jobspec.EventProgress, Progress: &p})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodeProgress_MatchedToTheJobsLayersAndCapped(t *testing.T) {
	job := layerMatcher{layers: []LayerInfo{{Digest: digest(1), Size: 100}, {Digest: digest(2), Size: 200}, {Digest: digest(1), Size: 100}}, peers: 4}
	good := progressLine(t, jobspec.Progress{Peers: 1000, Rate: -5, FromPeers: 7, Layers: []jobspec.LayerProgress{
		{Digest: digest(1), Done: 100, Total: 100, Skipped: true},
		{Digest: digest(2), Done: 1 << 40, Total: 1 << 40},
		{Digest: digest(1), Done: 50, Total: 100},
	}})
	unknown := progressLine(t, jobspec.Progress{Layers: []jobspec.LayerProgress{{Digest: "sha256:\x1b]0;evil\x07", Done: 1, Total: 1}}})
	tooMany := progressLine(t, jobspec.Progress{Layers: []jobspec.LayerProgress{{Digest: digest(1)}, {Digest: digest(2)}, {Digest: digest(1)}, {Digest: digest(1)}}})
	got := followLines(t, job, oversizedProgress(), unknown, tooMany, good)
	if len(got) != 1 {
		t.Fatalf("%d progress events recorded, want only the good one", len(got))
	}
	p := got[0]
	want := []LayerProgress{{Digest: digest(1), Done: 100, Total: 100, Skipped: true}, {Digest: digest(2), Done: 200, Total: 200}, {Digest: digest(1), Done: 50, Total: 100}}
	if fmt.Sprint(p.Layers) != fmt.Sprint(want) {
		t.Errorf("layers %+v, want %+v", p.Layers, want)
	}
	if p.Total != 400 || p.Done != 350 || p.Needed != 300 || p.Peers != 4 || p.Rate != 0 || p.FromPeers != 7 {
		t.Errorf("progress %+v: want total 400, done 350, needed 300, peers capped at 4, rate 0", p)
	}

	// Registry mode: the layers are whatever the registry serves, named by
	// well-formed IDs, at most maxRegistryLayers of them.
	reg := layerMatcher{peers: 2}
	short := progressLine(t, jobspec.Progress{Layers: []jobspec.LayerProgress{{Digest: "0123456789ab", Done: 5, Total: 10}}})
	evil := progressLine(t, jobspec.Progress{Layers: []jobspec.LayerProgress{{Digest: "0123456789ab\u202e", Done: 5, Total: 10}}})
	var many []jobspec.LayerProgress
	for i := range maxRegistryLayers + 1 {
		many = append(many, jobspec.LayerProgress{Digest: digest(i)})
	}
	got = followLines(t, reg, evil, progressLine(t, jobspec.Progress{Layers: many}), short)
	if len(got) != 1 || len(got[0].Layers) != 1 || got[0].Layers[0].Digest != "0123456789ab" {
		t.Errorf("registry mode: got %+v, want only the well-formed event", got)
	}
}

// A node's stderr line of several MiB must not stop the drain: a stopped
// drain blocks the node's next log line, and its events with it.
func TestNode_LongStderrLineDoesNotStopTheDrain(t *testing.T) {
	book := newHostBook([]string{"h1"}, time.Now, func(Event) {})
	p := openssh.NewFakeProcess()
	go drainStdin(p)
	n := followNode(p, "h1", slog.New(slog.DiscardHandler), nodeOutlets{book: book, emit: func(Event) {}})
	wrote := make(chan error, 1)
	go func() {
		_, err := p.StderrWriter().Write([]byte(strings.Repeat("x", 3<<20) + "\nlast words before dying\n"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the node's stderr write blocked: the drain stopped at the long line")
	}
	p.Exit(errors.New("exit status 1"))
	<-n.exited
	if n.err == nil || !strings.Contains(n.err.Error(), "last words before dying") {
		t.Errorf("node's end: %v; want its last stderr line", n.err)
	}
	if len(n.err.Error()) > 3*stderrTail {
		t.Errorf("the error kept %d bytes of stderr", len(n.err.Error()))
	}
}

func TestEachLine_CutsLongLinesAndKeepsTheRest(t *testing.T) {
	var got []string
	eachLine(strings.NewReader("short\r\n"+strings.Repeat("y", 200<<10)+"\nlast"), 10, func(l string) { got = append(got, l) })
	if fmt.Sprint(got) != fmt.Sprint([]string{"short", "yyyyyyyyyy", "last"}) {
		t.Errorf("lines %q", got)
	}
}

// heard (the end of the seeder's hold for this host's spec) comes once,
// at the node's first event, or when its stdout ends without one.
func TestNode_HeardAtTheFirstEventOrTheEnd(t *testing.T) {
	for _, events := range []int{0, 3} {
		book := newHostBook([]string{"h1"}, time.Now, func(Event) {})
		p := openssh.NewFakeProcess()
		go drainStdin(p)
		heard := make(chan struct{}, 10)
		n := followNode(p, "h1", slog.New(slog.DiscardHandler), nodeOutlets{book: book, emit: func(Event) {},
			heard: func() { heard <- struct{}{} }})
		select {
		case <-heard:
			t.Fatalf("%d events: heard before the node said anything", events)
		case <-time.After(100 * time.Millisecond):
		}
		for i := range events {
			if _, err := p.StdoutWriter().Write(append(progressLine(t, jobspec.Progress{}), '\n')); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				select {
				case <-heard:
				case <-time.After(10 * time.Second):
					t.Fatal("not heard after the first event")
				}
			}
		}
		p.Exit(nil)
		<-n.exited
		if events == 0 {
			select {
			case <-heard:
			default:
				t.Fatal("not heard when the node ended silent")
			}
		}
		if len(heard) != 0 {
			t.Errorf("%d events: heard %d more times", events, len(heard))
		}
	}
}

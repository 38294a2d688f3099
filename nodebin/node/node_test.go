package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
)

// run is one node under test: its stdin, its events and its exit code.
type run struct {
	t       *testing.T
	stdin   *io.PipeWriter
	events  chan jobspec.Event
	seen    []jobspec.Event
	code    chan int
	docker  *node.FakeDocker
	leecher *node.FakeLeecher
	ticks   chan time.Time
	// tickers are the periods the node asked Ticks for, in order, and
	// stopped how many of them it stopped.
	tickMu  sync.Mutex
	tickers []time.Duration
	stopped int
	swarms  int
	// connect, when set before ready is closed, replaces the fake daemon.
	connect func(ctx context.Context) (node.DockerAPI, error)
	ready   chan struct{}
}

type setup struct {
	spec    *jobspec.Spec
	daemon  *dockerimage.FakeDaemon
	leecher *node.FakeLeecher
	serial  bool
	// rawSpec replaces the spec line when set.
	rawSpec string
	// wait holds the node before it connects to docker until ready is
	// closed, so the test can set connect.
	wait bool
	// containerd is the node's Options.Containerd.
	containerd func(ctx context.Context, spec *jobspec.Spec) (node.Runtime, error)
	// swarmErr fails the swarm step.
	swarmErr error
	// swarmSpec, when set, sees the spec the swarm is started with.
	swarmSpec func(*jobspec.Spec)
}

func start(t *testing.T, s setup) *run {
	t.Helper()
	if s.daemon == nil {
		s.daemon = dockerimage.NewFakeDaemon()
	}
	if s.leecher == nil {
		s.leecher = &node.FakeLeecher{}
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	r := &run{
		t: t, stdin: inW, events: make(chan jobspec.Event, 1000), code: make(chan int, 1),
		docker: &node.FakeDocker{FakeDaemon: s.daemon}, leecher: s.leecher, ticks: make(chan time.Time),
		ready: make(chan struct{}),
	}
	opts := node.Options{
		Stdin:  inR,
		Stdout: outW,
		Docker: func(ctx context.Context, host string) (node.DockerAPI, error) {
			<-r.ready
			if r.connect != nil {
				return r.connect(ctx)
			}
			return r.docker, nil
		},
		Swarm: func(ctx context.Context, spec *jobspec.Spec, dir string) (node.Leecher, error) {
			if s.swarmErr != nil {
				return nil, s.swarmErr
			}
			r.swarms++
			if s.swarmSpec != nil {
				s.swarmSpec(spec)
			}
			r.leecher.Dir = dir
			return r.leecher, nil
		},
		Ticks: func(d time.Duration) (<-chan time.Time, func()) {
			r.tickMu.Lock()
			defer r.tickMu.Unlock()
			r.tickers = append(r.tickers, d)
			return r.ticks, sync.OnceFunc(func() {
				r.tickMu.Lock()
				r.stopped++
				r.tickMu.Unlock()
			})
		},
		Serial:     s.serial,
		Containerd: s.containerd,
	}
	go func() {
		r.code <- node.Run(t.Context(), opts)
		outW.Close()
	}()
	go func() {
		dec := jobspec.NewDecoder(outR)
		for {
			var ev jobspec.Event
			if err := dec.Decode(&ev); err != nil {
				close(r.events)
				return
			}
			r.events <- ev
		}
	}()
	line := s.rawSpec
	if line == "" {
		b, err := json.Marshal(s.spec)
		if err != nil {
			t.Fatal(err)
		}
		line = string(b)
	}
	go fmt.Fprintln(inW, line)
	t.Cleanup(func() { inW.Close() })
	if !s.wait {
		close(r.ready)
	}
	return r
}

func (r *run) send(kind jobspec.ControlKind) {
	go fmt.Fprintf(r.stdin, `{"kind":%q}`+"\n", kind)
}

// waitFor reads events until one matches, failing after a while.
func (r *run) waitFor(what string, match func(jobspec.Event) bool) jobspec.Event {
	r.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-r.events:
			if !ok {
				r.t.Fatalf("events ended before %s; saw %s", what, r.summary())
			}
			r.seen = append(r.seen, ev)
			if match(ev) {
				return ev
			}
		case <-timeout:
			r.t.Fatalf("no %s within a minute; saw %s", what, r.summary())
		}
	}
}

func (r *run) waitState(s jobspec.State) jobspec.Event {
	r.t.Helper()
	return r.waitFor("state "+string(s), func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventState && ev.State == s })
}

// exit waits for the node to end and returns its code; the exit event must
// be the last line.
func (r *run) exit() int {
	r.t.Helper()
	r.waitFor("exit event", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventExit })
	select {
	case ev, ok := <-r.events:
		if ok {
			r.t.Errorf("event after the exit event: %+v", ev)
		}
	case <-time.After(time.Minute):
		r.t.Fatal("stdout not closed after the exit event")
	}
	return <-r.code
}

func (r *run) errorMessage() string {
	for _, ev := range r.seen {
		if ev.Kind == jobspec.EventError {
			return ev.Message
		}
	}
	return ""
}

func (r *run) summary() string {
	var parts []string
	for _, ev := range r.seen {
		parts = append(parts, string(ev.Kind)+":"+string(ev.State)+":"+ev.Message)
	}
	return strings.Join(parts, " | ")
}

func testImage(seed uint64, sizes ...int) dockerimage.TestImage {
	var tars [][]byte
	for i, s := range sizes {
		tars = append(tars, dockerimage.LayerTar(seed*100+uint64(i), fmt.Sprintf("f%d", i), s))
	}
	return dockerimage.NewTestImage(tars, false, fmt.Sprint(seed))
}

func files(img dockerimage.TestImage) map[string][]byte {
	m := map[string][]byte{}
	for _, l := range img.Layers {
		m[l.Digest] = l.File
	}
	return m
}

func workDir(t *testing.T) string {
	return filepath.Join(t.TempDir(), "layercast-job1")
}

func assertGone(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir %s still there (stat: %v)", dir, err)
	}
}

func TestNode_DownloadsOnlyTheMissingLayersAndImports(t *testing.T) {
	base := [][]byte{dockerimage.LayerTar(1, "a", 3000), dockerimage.LayerTar(2, "b", 4000)}
	baseImg := dockerimage.NewTestImage(base, false, "base")
	img := dockerimage.NewTestImage(append(base, dockerimage.LayerTar(3, "c", 5000), dockerimage.LayerTar(4, "d", 6000)), false, "app")
	daemon := dockerimage.NewFakeDaemon()
	daemon.Put(baseImg, "lab/base:1")
	dir := workDir(t)
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:1", dir), daemon: daemon, leecher: &node.FakeLeecher{Files: files(img)}})

	r.waitState(jobspec.StateChecking)
	if _, err := os.ReadFile(filepath.Join(dir, "node.pid")); err != nil {
		t.Errorf("no pid file: %v", err)
	}
	// No tick is sent: the last progress comes before done.
	p := r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress }).Progress
	done := r.waitState(jobspec.StateDone)
	if done.ImageID != img.ID {
		t.Errorf("done event image ID %s, want %s", done.ImageID, img.ID)
	}
	var got []string
	for _, l := range r.leecher.Requested() {
		got = append(got, l.Digest)
	}
	if want := []string{img.Layers[2].Digest, img.Layers[3].Digest}; !slices.Equal(got, want) {
		t.Errorf("downloaded %v, want only the missing %v", got, want)
	}
	for _, names := range daemon.Loads {
		for _, l := range img.Layers[:2] {
			if slices.Contains(names, dockerimage.LayerName(l.Digest)) {
				t.Errorf("a load sent the file of layer %s the daemon had", l.Digest)
			}
		}
	}
	for i, l := range p.Layers {
		if l.Skipped != (i < 2) || l.Done != l.Total {
			t.Errorf("layer %d progress %+v, want skipped=%v and complete", i, l, i < 2)
		}
	}
	if r.leecher.Closed() {
		t.Error("swarm closed before the stop: the node must seed until then")
	}
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit code %d, want 0; %s", code, r.summary())
	}
	if refs := daemon.Refs(); refs["lab/app:1"] != img.ID || len(refs) != 2 {
		t.Errorf("daemon tags %v, want lab/base:1 and lab/app:1 -> %s only", refs, img.ID)
	}
	if !r.leecher.Closed() || !r.docker.Closed() {
		t.Errorf("swarm closed %v, docker closed %v; want both", r.leecher.Closed(), r.docker.Closed())
	}
	assertGone(t, dir)
}

func TestNode_OnlyTagsAnImageTheDaemonHas(t *testing.T) {
	img := testImage(5, 1000, 2000)
	daemon := dockerimage.NewFakeDaemon()
	daemon.Put(img, "old/name:1")
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:2", workDir(t)), daemon: daemon})
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Fatalf("exit %d: %s", code, r.summary())
	}
	if r.swarms != 0 || len(daemon.Loads) != 0 {
		t.Errorf("swarm started %d times, %d loads; want none", r.swarms, len(daemon.Loads))
	}
	if refs := daemon.Refs(); refs["lab/app:2"] != img.ID || refs["old/name:1"] != img.ID {
		t.Errorf("tags %v", refs)
	}
}

func TestNode_ExitsAndCleansUpWhenHeartbeatsStop(t *testing.T) {
	img := testImage(6, 1000, 2000)
	spec := node.SpecFor(img, "lab/app:3", workDir(t))
	spec.Heartbeat = jobspec.Duration(time.Second)
	// The download never finishes: only the heartbeat can end the job.
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img), Gate: make(chan struct{})}})
	r.waitState(jobspec.StateDownloading)
	if code := r.exit(); code != node.ExitCancelled {
		t.Errorf("exit %d, want %d", code, node.ExitCancelled)
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "bastion gone: no control line for 1s") {
		t.Errorf("error event %q does not say the bastion is gone", msg)
	}
	assertGone(t, spec.WorkDir)
	if !r.leecher.Closed() {
		t.Error("swarm client not closed")
	}
}

func TestNode_HeartbeatsKeepItAlive(t *testing.T) {
	img := testImage(7, 1000)
	spec := node.SpecFor(img, "lab/app:4", workDir(t))
	spec.Heartbeat = jobspec.Duration(time.Second)
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img)}})
	stop := make(chan struct{})
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				fmt.Fprintln(r.stdin, `{"kind":"heartbeat"}`)
			}
		}
	}()
	r.waitState(jobspec.StateDone)
	select {
	case code := <-r.code:
		t.Fatalf("node exited (%d) although heartbeats arrived: %s", code, r.summary())
	case <-time.After(3 * time.Second): // three heartbeat timeouts
	}
	close(stop)
	<-beating
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit %d", code)
	}
}

func TestNode_ExitsWhenStdinCloses(t *testing.T) {
	img := testImage(8, 1000)
	spec := node.SpecFor(img, "lab/app:5", workDir(t))
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img)}})
	r.waitState(jobspec.StateDone)
	r.stdin.Close()
	// After done the image stays: the job succeeded, only the bastion left.
	if code := r.exit(); code != node.ExitCancelled {
		t.Errorf("exit %d, want %d", code, node.ExitCancelled)
	}
	if r.docker.Refs()["lab/app:5"] != img.ID {
		t.Error("image removed although it was complete")
	}
	assertGone(t, spec.WorkDir)
}

func TestNode_StopWhileDownloadingLeavesNoImage(t *testing.T) {
	img := testImage(9, 1000, 2000, 3000)
	old := testImage(10, 500)
	daemon := dockerimage.NewFakeDaemon()
	daemon.Put(old, "lab/app:6")
	gate := make(chan struct{})
	spec := node.SpecFor(img, "lab/app:6", workDir(t))
	r := start(t, setup{spec: spec, daemon: daemon, leecher: &node.FakeLeecher{Files: files(img), Gate: gate}})
	r.waitState(jobspec.StateDownloading)
	gate <- struct{}{} // layer 0 arrives and is loaded ahead as a temporary image
	waitUntil(t, "prefix image", func() bool { return daemon.Refs()[jobspec.TempRef("job1", 1)] != "" })
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitCancelled {
		t.Errorf("exit %d, want %d", code, node.ExitCancelled)
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "download and import: stopped by the bastion") {
		t.Errorf("error event %q", msg)
	}
	if refs, ids := daemon.Refs(), daemon.IDs(); len(refs) != 1 || refs["lab/app:6"] != old.ID || len(ids) != 1 {
		t.Errorf("daemon holds tags %v and images %v, want only the earlier image", refs, ids)
	}
	assertGone(t, spec.WorkDir)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
	}
}

func TestNode_CorruptLayerFailsAndRestoresTheDaemon(t *testing.T) {
	img := testImage(11, 1000, 2000, 3000)
	old := testImage(12, 500)
	daemon := dockerimage.NewFakeDaemon()
	daemon.Put(old, "lab/app:7")
	fs := files(img)
	fs[img.Layers[2].Digest] = dockerimage.LayerTar(999, "x", 3000) // not what the diff ID says
	spec := node.SpecFor(img, "lab/app:7", workDir(t))
	r := start(t, setup{spec: spec, daemon: daemon, leecher: &node.FakeLeecher{Files: fs}})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d, want %d", code, node.ExitFailed)
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "download and import: load image: invalid diffID for layer 2") {
		t.Errorf("error event %q", msg)
	}
	if refs, ids := daemon.Refs(), daemon.IDs(); len(refs) != 1 || refs["lab/app:7"] != old.ID || len(ids) != 1 {
		t.Errorf("daemon holds tags %v and images %v, want only the earlier image", refs, ids)
	}
	assertGone(t, spec.WorkDir)
}

func TestNode_LoadThatReportsSuccessWithoutAnImageFails(t *testing.T) {
	img := testImage(13, 1000, 2000)
	daemon := dockerimage.NewFakeDaemon()
	daemon.DropLoads = true
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:8", workDir(t)), daemon: daemon, leecher: &node.FakeLeecher{Files: files(img)}})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d, want %d", code, node.ExitFailed)
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "is not in the daemon") {
		t.Errorf("error event %q", msg)
	}
}

func TestNode_SwarmFailureIsReported(t *testing.T) {
	img := testImage(14, 1000, 2000)
	l := &node.FakeLeecher{Files: files(img), Order: []string{img.Layers[0].Digest}, Err: errors.New("tracker refused the token")}
	spec := node.SpecFor(img, "lab/app:9", workDir(t))
	r := start(t, setup{spec: spec, leecher: l})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d", code)
	}
	if msg := r.errorMessage(); msg != "download and import: download layers: tracker refused the token" {
		t.Errorf("error event %q", msg)
	}
	if ids := r.docker.IDs(); len(ids) != 0 {
		t.Errorf("daemon holds %v, want nothing", ids)
	}
}

func TestNode_LoadsPrefixesWhileLaterLayersDownload(t *testing.T) {
	img := testImage(15, 1000, 2000, 3000, 4000)
	for _, serial := range []bool{false, true} {
		t.Run(fmt.Sprintf("serial=%v", serial), func(t *testing.T) {
			daemon := dockerimage.NewFakeDaemon()
			gate := make(chan struct{})
			r := start(t, setup{spec: node.SpecFor(img, "lab/app:10", workDir(t)), daemon: daemon,
				leecher: &node.FakeLeecher{Files: files(img), Gate: gate}, serial: serial})
			r.waitState(jobspec.StateDownloading)
			for i := range 3 {
				gate <- struct{}{}
				if !serial {
					waitUntil(t, "prefix image", func() bool { return daemon.Refs()[jobspec.TempRef("job1", i+1)] != "" })
				}
			}
			gate <- struct{}{}
			r.waitState(jobspec.StateDone)
			var got []int
			for _, names := range daemon.Loads {
				got = append(got, len(names))
			}
			want := []int{1, 1, 1, 1}
			if serial {
				want = []int{4}
			}
			if !slices.Equal(got, want) {
				t.Errorf("layer files per load %v, want %v", got, want)
			}
			if refs := daemon.Refs(); len(refs) != 1 || refs["lab/app:10"] != img.ID || len(daemon.IDs()) != 1 {
				t.Errorf("daemon holds %v / %v, want only the image: temporary images must be gone", refs, daemon.IDs())
			}
			r.send(jobspec.ControlStop)
			r.exit()
		})
	}
}

func TestNode_OutOfOrderLayersWaitForTheirPrefix(t *testing.T) {
	img := testImage(16, 1000, 2000, 3000)
	daemon := dockerimage.NewFakeDaemon()
	var order []string
	for i := len(img.Layers) - 1; i >= 0; i-- {
		order = append(order, img.Layers[i].Digest)
	}
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:11", workDir(t)), daemon: daemon,
		leecher: &node.FakeLeecher{Files: files(img), Order: order}})
	r.waitState(jobspec.StateDone)
	if len(daemon.Loads) != 1 || len(daemon.Loads[0]) != 3 {
		t.Errorf("loads %v, want one load with all three layers", daemon.Loads)
	}
	r.send(jobspec.ControlStop)
	r.exit()
}

func TestNode_EmitsAProgressEventAtATickWhenTheTransferMoved(t *testing.T) {
	img := testImage(17, 1000, 2000)
	gate := make(chan struct{})
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:12", workDir(t)), leecher: &node.FakeLeecher{Files: files(img), Gate: gate}})
	r.waitState(jobspec.StateDownloading)
	progress := func() *jobspec.Progress {
		r.ticks <- time.Now()
		return r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress }).Progress
	}
	p := progress()
	if len(p.Layers) != 2 || p.Layers[0].Done != 0 || p.Layers[0].Total != int64(len(img.Layers[0].File)) || p.Peers != 1 {
		t.Errorf("first progress %+v", p)
	}
	gate <- struct{}{}
	waitUntil(t, "layer 0 done", func() bool { return len(r.leecher.Requested()) == 2 && r.leecher.Stats().FromSeeder > 0 })
	p = progress()
	if p.Layers[0].Done != p.Layers[0].Total || p.Layers[1].Done != 0 || p.FromSeeder != p.Layers[0].Total {
		t.Errorf("progress after layer 0 %+v", p)
	}
	gate <- struct{}{}
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	r.exit()
}

func TestNode_SaysItIsAliveWhenNothingChangedForReportEvery(t *testing.T) {
	img := testImage(24, 1000)
	gate := make(chan struct{})
	leecher := &node.FakeLeecher{Files: files(img), Gate: gate}
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:16", workDir(t)), leecher: leecher})
	r.waitState(jobspec.StateDownloading)
	t0 := time.Now()
	r.ticks <- t0
	r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress })
	// Nothing moves. A tick within ReportEvery of the last event says
	// nothing; the first one past it says the node is alive, and only that.
	r.ticks <- t0.Add(jobspec.ReportEvery / 2)
	r.ticks <- t0.Add(jobspec.ReportEvery + time.Second)
	r.waitFor("alive", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventAlive })
	var kinds []jobspec.EventKind
	for _, ev := range r.seen {
		kinds = append(kinds, ev.Kind)
	}
	if got := kinds[len(kinds)-2:]; got[0] != jobspec.EventProgress {
		t.Errorf("events before the alive one: %v; want the progress, then alive", kinds)
	}
	gate <- struct{}{}
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	r.exit()
}

func TestNode_EmitsProgressOnlyWhenItChangedAndTicksSlowerOnceDone(t *testing.T) {
	img := testImage(23, 1000, 2000)
	gate := make(chan struct{})
	leecher := &node.FakeLeecher{Files: files(img), Gate: gate}
	r := start(t, setup{spec: node.SpecFor(img, "lab/app:15", workDir(t)), leecher: leecher})
	r.waitState(jobspec.StateDownloading)
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	next := func() *jobspec.Progress {
		return r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress }).Progress
	}
	r.ticks <- at(0)
	if p := next(); p.Layers[0].Done != 0 {
		t.Fatalf("first progress %+v", p)
	}
	// Nothing moves: two ticks, no event (the second tick is taken only
	// once the first was handled).
	r.ticks <- at(250)
	r.ticks <- at(500)
	gate <- struct{}{}
	waitUntil(t, "layer 0 done", func() bool { return leecher.Stats().FromSeeder > 0 })
	r.ticks <- at(750)
	if p := next(); p.Layers[0].Done != p.Layers[0].Total {
		t.Errorf("progress after an unchanged tick %+v: the unchanged tick sent an event", p)
	}
	gate <- struct{}{}
	r.waitState(jobspec.StateDone)
	// Done: at the next tick the node trades the job's progress ticker
	// for one of doneProgressEvery, and reports what changed since at
	// each of its ticks. The tick at 750 may have been handled after the
	// gate let layer 1 through, and its event (layer 1 done, nothing
	// uploaded) may follow the done state: wait past it.
	leecher.Uploaded.Store(1)
	r.ticks <- at(3000)
	p := r.waitFor("progress with the upload", func(ev jobspec.Event) bool {
		return ev.Kind == jobspec.EventProgress && ev.Progress.Uploaded != 0
	}).Progress
	if p.Uploaded != 1 || p.Layers[1].Done != p.Layers[1].Total {
		t.Errorf("first progress once done %+v", p)
	}
	waitUntil(t, "the done ticker", func() bool {
		r.tickMu.Lock()
		defer r.tickMu.Unlock()
		return len(r.tickers) == 2
	})
	r.tickMu.Lock()
	if want := []time.Duration{250 * time.Millisecond, 2 * time.Second}; !slices.Equal(r.tickers, want) || r.stopped != 1 {
		t.Errorf("tickers asked for %v, %d stopped; want %v, the first stopped", r.tickers, r.stopped, want)
	}
	r.tickMu.Unlock()
	leecher.Uploaded.Store(3)
	r.ticks <- at(5000)
	if p := next(); p.Uploaded != 3 {
		t.Errorf("progress %+v, want uploaded 3", p)
	}
	r.send(jobspec.ControlStop)
	r.exit()
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	if r.stopped != 2 {
		t.Errorf("%d of the node's 2 tickers stopped", r.stopped)
	}
}

func TestNode_RejectsABadSpec(t *testing.T) {
	t.Run("not JSON", func(t *testing.T) {
		r := start(t, setup{rawSpec: "hello"})
		if code := r.exit(); code != node.ExitBadSpec {
			t.Errorf("exit %d", code)
		}
		if msg := r.errorMessage(); !strings.HasPrefix(msg, "read job spec:") {
			t.Errorf("error %q", msg)
		}
	})
	t.Run("config of another image", func(t *testing.T) {
		img := testImage(18, 1000)
		spec := node.SpecFor(img, "lab/app:13", workDir(t))
		spec.ImageID = testImage(19, 1000).ID
		r := start(t, setup{spec: spec})
		if code := r.exit(); code != node.ExitBadSpec {
			t.Errorf("exit %d", code)
		}
		if msg := r.errorMessage(); !strings.Contains(msg, "check job spec: bad job spec: config hashes to") {
			t.Errorf("error %q", msg)
		}
		assertGone(t, spec.WorkDir)
	})
	t.Run("top-level work dir", func(t *testing.T) {
		spec := node.SpecFor(testImage(20, 1000), "lab/app:14", "/tmp")
		r := start(t, setup{spec: spec})
		if code := r.exit(); code != node.ExitBadSpec {
			t.Errorf("exit %d", code)
		}
		if _, err := os.Stat("/tmp"); err != nil {
			t.Fatal("the node removed /tmp")
		}
	})
}

func TestNode_RegistryModePullsAndChecks(t *testing.T) {
	img := testImage(21, 1000, 2000)
	daemon := dockerimage.NewFakeDaemon()
	daemon.Registry["reg.lab/app:1"] = img
	spec := &jobspec.Spec{Version: jobspec.Version, JobID: "job1", Image: "reg.lab/app:1", ImageID: img.ID, Mode: "registry", WorkDir: workDir(t)}
	r := start(t, setup{spec: spec, daemon: daemon})
	r.waitState(jobspec.StateDownloading)
	// No tick is sent: a pull that ends between two ticks is still
	// reported, before done, so the bastion knows every layer's outcome.
	p := r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress }).Progress
	done := r.waitState(jobspec.StateDone)
	if done.ImageID != img.ID {
		t.Errorf("done with %s, want %s", done.ImageID, img.ID)
	}
	if len(p.Layers) != 2 || p.Layers[1].Done != int64(len(img.Layers[1].File)) {
		t.Errorf("progress %+v", p)
	}
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit %d", code)
	}
}

func TestNode_RegistryModeRemovesAnUnexpectedImage(t *testing.T) {
	img := testImage(22, 1000)
	daemon := dockerimage.NewFakeDaemon()
	daemon.Registry["reg.lab/app:2"] = img
	spec := &jobspec.Spec{Version: jobspec.Version, JobID: "job1", Image: "reg.lab/app:2", ImageID: testImage(23, 1).ID, Mode: "registry", WorkDir: workDir(t)}
	r := start(t, setup{spec: spec, daemon: daemon})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d", code)
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "pull from the registry: check image: reg.lab/app:2 has ID") {
		t.Errorf("error %q", msg)
	}
	if ids := daemon.IDs(); len(ids) != 0 {
		t.Errorf("daemon holds %v after the failed check", ids)
	}
}

func TestNode_TagsAnImageWithoutTagAsLatest(t *testing.T) {
	img := testImage(24, 1000)
	daemon := dockerimage.NewFakeDaemon()
	r := start(t, setup{spec: node.SpecFor(img, "lab/app", workDir(t)), daemon: daemon, leecher: &node.FakeLeecher{Files: files(img)}})
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	r.exit()
	if refs := daemon.Refs(); refs["lab/app:latest"] != img.ID || len(refs) != 1 {
		t.Errorf("tags %v, want lab/app:latest", refs)
	}
}

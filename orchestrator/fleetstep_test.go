package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

func TestFleet_HostWithoutRoomForTheNodeFailsBeforeUpload(t *testing.T) {
	l := newTestLab(t, "h1", "h2")
	small := l.play("h1", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	small.Facts.WorkFree = 10 // the fake node binary is 24 bytes, 48 compressed
	l.play("h2", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := hostResults(rep)
	if h := r["h1"]; h.State != HostFailed || !strings.Contains(h.Error, "not enough space in /tmp") || !strings.Contains(h.Error, "MB free in /tmp") {
		t.Errorf("h1: %+v", h)
	}
	if len(small.Uploaded()) != 0 {
		t.Errorf("h1 got an upload: %v", small.Uploaded())
	}
	if r["h2"].State != HostDone {
		t.Errorf("h2: %+v", r["h2"])
	}
}

func TestFleet_TempImagesOfADeadNodeAreRemoved(t *testing.T) {
	l := newTestLab(t, "h1")
	var c *hostops.FakeConn
	c = l.play("h1", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		spec, err := jobspec.ReadSpec(jobspec.NewDecoder(p.StdinReader()))
		if err != nil {
			p.Exit(err)
			return
		}
		// The node loads a first layer, then dies without cleaning up.
		c.TempImages = append(c.TempImages, jobspec.TempRef(spec.JobID, 1))
		p.Exit(errors.New("killed by signal KILL"))
	})
	// Another job's: its own node, or the next job's node once that job is
	// over, removes those (the bastion cannot tell it is over).
	other := jobspec.TempRef("other-job", 2)
	c.TempImages = []string{other}
	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; h.State != HostFailed || !strings.Contains(h.Error, "node binary exited early") {
		t.Errorf("%+v", h)
	}
	if left := c.TempImagesLeft(); !slices.Equal(left, []string{other}) {
		t.Errorf("temporary images left: %v, want only the other job's", left)
	}
	var logs []string
	rec.mu.Lock()
	for _, e := range rec.events {
		if e.Kind == EventHostLog || e.Kind == EventTeardown {
			logs = append(logs, e.Message)
		}
	}
	rec.mu.Unlock()
	if !slices.ContainsFunc(logs, func(s string) bool {
		return strings.Contains(s, "its temporary images "+jobspec.TempRefPrefix(rep.JobID))
	}) {
		t.Errorf("no event says the dead node's image was removed: %q", logs)
	}
}

func TestFleet_LostConnectionSaysSo(t *testing.T) {
	l := newTestLab(t, "h1")
	l.play("h1", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		_, _ = io.Copy(io.Discard, io.LimitReader(p.StdinReader(), 10))
		time.Sleep(20 * time.Millisecond)
		// What the SSH process reports when keepalives went unanswered.
		p.Exit(fmt.Errorf("%w: no answer to keepalives for 30s", openssh.ErrConnectionLost))
	})
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; h.State != HostFailed || !strings.Contains(h.Error, "lost the SSH connection") {
		t.Errorf("%+v", h)
	}
}

func hostResults(rep *Report) map[string]HostResult {
	out := map[string]HostResult{}
	for _, h := range rep.Hosts {
		out[h.Host] = h
	}
	return out
}

func TestFleet_HostWhoseConnectionDropsBeforeAnyWriteIsSetUpAgain(t *testing.T) {
	l := newTestLab(t, "flaky", "fine")
	lost := fmt.Errorf("probe host: start sh: %w: no answer to keepalives for 1m0s", openssh.ErrConnectionLost)
	first := l.play("flaky", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	first.ProbeErr = lost
	l.redialConn(t, "flaky")
	l.play("fine", fakeNode(t, make(chan *jobspec.Spec, 1), ""))

	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertAllDone(t, rep)
	if n := slices.Index(l.dialer.Dialed, "flaky"); n < 0 || slices.Index(l.dialer.Dialed[n+1:], "flaky") < 0 {
		t.Errorf("dialled %v: want flaky twice", l.dialer.Dialed)
	}
	if !first.Closed() || len(first.WorkDirs()) != 0 {
		t.Errorf("the lost connection: closed %v, work dirs %v; want closed with nothing made", first.Closed(), first.WorkDirs())
	}
	said := false
	for _, e := range rec.events {
		said = said || e.Kind == EventHostLog && e.Host == "flaky" && strings.Contains(e.Message, "connecting again")
	}
	if !said {
		t.Error("no host log says the host is connected again")
	}
}

func TestFleet_HostWhoseConnectionDropsMakingItsWorkDirIsClearedAndSetUpAgain(t *testing.T) {
	first, second, rep, rec := lostOnce(t, func(first *hostops.FakeConn) {
		first.MkdirErr = fmt.Errorf("open session: %w", openssh.ErrConnectionLost)
	})
	// The mkdir may have run on the host before the answer was lost: the
	// new connection removes the dir before it makes it again.
	dir := "/tmp/" + jobspec.WorkDirName(rep.JobID)
	assertCallsInOrder(t, second, "stop "+dir, "rm "+dir, "mkdir "+rep.JobID)
	if calls := second.Calls(); slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "rmtemp ") }) {
		t.Errorf("no node ran on the lost connection, yet its temporary images were looked for: %q", calls)
	}
	if !first.Closed() {
		t.Error("the lost connection was not closed")
	}
	assertHostLog(t, rec, "flaky", "cleared what the lost SSH connection left: removed "+dir)
}

func TestFleet_HostWhoseConnectionDropsStartingItsNodeHasItsTemporaryImagesLookedFor(t *testing.T) {
	_, second, rep, _ := lostOnce(t, func(first *hostops.FakeConn) {
		// The start command may reach the host, and its node run, before
		// the answer is lost: the bastion never saw that node.
		first.StartErr = fmt.Errorf("start node: %w", openssh.ErrConnectionLost)
	})
	dir := "/tmp/" + jobspec.WorkDirName(rep.JobID)
	assertCallsInOrder(t, second, "stop "+dir, "rmtemp "+rep.JobID+" true", "rm "+dir, "mkdir "+rep.JobID, "start ")
}

// lostOnce runs a job on one host, "flaky", whose first connection lose
// sets up to be lost, and checks that the host ends done on its second
// connection. It returns both connections, the report and the events.
func lostOnce(t *testing.T, lose func(first *hostops.FakeConn)) (first, second *hostops.FakeConn, rep *Report, rec *recorder) {
	t.Helper()
	l := newTestLab(t, "flaky")
	first = l.play("flaky", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	lose(first)
	second = l.redialConn(t, "flaky")
	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; h.State != HostDone {
		t.Fatalf("flaky: %s %q; want done", h.State, h.Error)
	}
	return first, second, rep, rec
}

func TestFleet_HostWhoseConnectionDropsWhileItsNodeRunsIsClearedAndSetUpAgain(t *testing.T) {
	l := newTestLab(t, "flaky", "fine")
	second := l.redialConn(t, "flaky")
	l.play("flaky", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		_, emit, spec, ok := startFakeNode(t, p)
		if !ok {
			return
		}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		var lp []jobspec.LayerProgress
		for _, ly := range spec.Layers {
			lp = append(lp, jobspec.LayerProgress{Digest: ly.Digest, Done: ly.Size, Total: ly.Size})
		}
		emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: lp, FromSeeder: 30}})
		// It loads a first layer into the host's daemon, and the host
		// drops off the bastion's link: the new connection finds that
		// layer's temporary image in the same daemon.
		second.TempImages = []string{jobspec.TempRef(spec.JobID, 1)}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateImporting})
		p.Exit(fmt.Errorf("wait: %w: no answer to keepalives for 1m0s", openssh.ErrConnectionLost))
	})
	l.play("fine", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertAllDone(t, rep)
	dir := "/tmp/" + jobspec.WorkDirName(rep.JobID)
	// Stopped before its temporary images go, and those before the dir:
	// the wait for a load in flight reads the dir's marker.
	assertCallsInOrder(t, second, "stop "+dir, "rmtemp "+rep.JobID+" true", "rm "+dir, "mkdir "+rep.JobID, "start ")
	if left := second.TempImagesLeft(); len(left) != 0 {
		t.Errorf("temporary images left: %q", left)
	}
	assertHostLog(t, rec, "flaky", "cleared what the lost SSH connection left: removed its temporary images "+jobspec.TempRef(rep.JobID, 1)+", removed "+dir)
	// The book went back to connecting: the watchdog judges the new node
	// on its own progress.
	var states []HostState
	for _, e := range rec.of(EventHostState, "flaky") {
		states = append(states, e.State)
	}
	if i := slices.Index(states, HostImporting); i < 0 || !slices.Contains(states[i:], HostConnecting) {
		t.Errorf("flaky's states %q: want connecting again after importing", states)
	}
}

func TestFleet_HostIsSetUpAgainAtMostTwiceAndItsErrorNamesTheFirstLoss(t *testing.T) {
	l := newTestLab(t, "flaky")
	lost := func(what string) *hostops.FakeConn {
		c := hostops.NewFakeConn(inventory.Host{Name: "flaky"})
		c.ProbeErr = fmt.Errorf("probe host: %w: %s", openssh.ErrConnectionLost, what)
		return c
	}
	l.dialer.Conns = map[string]*hostops.FakeConn{"flaky": lost("first")}
	l.dialer.Redials = map[string][]*hostops.FakeConn{"flaky": {lost("second"), lost("third"), hostops.NewFakeConn(inventory.Host{Name: "flaky"})}}
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := rep.Hosts[0]
	if h.State != HostFailed || !strings.Contains(h.Error, "third") || !strings.Contains(h.Error, "attempt 3 of 3") || !strings.Contains(h.Error, "first") {
		t.Errorf("flaky: %s %q; want failed at the third attempt, naming the first loss", h.State, h.Error)
	}
	if n := len(l.dialer.Dialed); n != 3 {
		t.Errorf("dialled %v: want 3 attempts", l.dialer.Dialed)
	}
}

func TestFleet_HostItsNodeFailedIsNotSetUpAgainWhenItsConnectionDrops(t *testing.T) {
	l := newTestLab(t, "h1")
	l.play("h1", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		_, emit, _, ok := startFakeNode(t, p)
		if !ok {
			return
		}
		emit(jobspec.Event{Kind: jobspec.EventError, State: jobspec.StateFailed, Message: "docker: no space left on device"})
		p.Exit(fmt.Errorf("wait: %w", openssh.ErrConnectionLost))
	})
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; h.State != HostFailed || !strings.Contains(h.Error, "no space left") {
		t.Errorf("h1: %s %q; want failed with its node's error", h.State, h.Error)
	}
	if n := len(l.dialer.Dialed); n != 1 {
		t.Errorf("dialled %v: a failed host must not be set up again", l.dialer.Dialed)
	}
}

// redialConn makes the connection host gets after it lost its first: a
// healthy host whose node does the job.
func (l *testLab) redialConn(t *testing.T, host string) *hostops.FakeConn {
	c := hostops.NewFakeConn(inventory.Host{Name: host})
	c.StartFunc = fakeNode(t, make(chan *jobspec.Spec, 1), "")
	l.dialer.Redials = map[string][]*hostops.FakeConn{host: {c}}
	return c
}

// assertAllDone checks that every host of rep is done.
func assertAllDone(t *testing.T, rep *Report) {
	t.Helper()
	for _, h := range rep.Hosts {
		if h.State != HostDone {
			t.Errorf("%s: %s %q; want done", h.Host, h.State, h.Error)
		}
	}
}

// assertCallsInOrder checks that c's calls include, in this order, calls
// starting with each of want.
func assertCallsInOrder(t *testing.T, c *hostops.FakeConn, want ...string) {
	t.Helper()
	calls := c.Calls()
	i := 0
	for _, call := range calls {
		if i < len(want) && strings.HasPrefix(call, want[i]) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("calls %q: want, in order, %q (missing %q)", calls, want, want[i])
	}
}

// assertHostLog checks that a host log event of host says msg.
func assertHostLog(t *testing.T, rec *recorder, host, msg string) {
	t.Helper()
	var logs []string
	for _, e := range rec.of(EventHostLog, host) {
		if e.Message == msg {
			return
		}
		logs = append(logs, e.Message)
	}
	t.Errorf("%s's log events %q: want %q", host, logs, msg)
}

func TestFleet_EndedJobsAreClearedOnlyWhereTheProbeSawOneAndReported(t *testing.T) {
	l := newTestLab(t, "clean", "left")
	clean := l.play("clean", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	left := l.play("left", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	left.Facts.Leftovers = []string{"/tmp/layercast-ended", "/tmp/layercast-running"}
	left.Stale = []hostops.StaleDir{
		{Dir: "/tmp/layercast-ended", PID: 42, Killed: true, Removed: true},
		{Dir: "/tmp/layercast-running", Live: true},
	}
	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rep.Hosts {
		if h.State != HostDone {
			t.Errorf("%s: %s %q", h.Host, h.State, h.Error)
		}
	}
	cleaned := func(c *hostops.FakeConn) bool {
		return slices.ContainsFunc(c.Calls(), func(s string) bool { return strings.HasPrefix(s, "clean ") })
	}
	if cleaned(clean) {
		t.Errorf("clean: looked for ended jobs though the probe saw none: %q", clean.Calls())
	}
	if !cleaned(left) {
		t.Errorf("left: did not look for ended jobs: %q", left.Calls())
	}
	var logs []string
	for _, e := range rec.of(EventHostLog, "left") {
		logs = append(logs, e.Message)
	}
	if want := []string{"removed what an ended job left: /tmp/layercast-ended (stopped its node, pid 42)"}; !slices.Equal(logs, want) {
		t.Errorf("left's log events %q, want %q", logs, want)
	}
}

package orchestrator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// stuckNode plays a node whose daemon stops answering at one point of the
// job: it reports up to that point, then waits for the bastion's stop.
func stuckNode(at jobspec.State, stopped chan<- string) func(context.Context, openssh.Command, *openssh.FakeProcess) {
	return func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec := jobspec.NewDecoder(p.StdinReader())
		enc := jobspec.NewEncoder(p.StdoutWriter())
		spec, err := jobspec.ReadSpec(dec)
		if err != nil {
			p.Exit(err)
			return
		}
		emit := func(e jobspec.Event) { e.Time = time.Now(); _ = enc.Encode(e) }
		if at != jobspec.StateChecking {
			emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateChecking})
			emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
			var lp []jobspec.LayerProgress
			for _, l := range spec.Layers {
				lp = append(lp, jobspec.LayerProgress{Digest: l.Digest, Done: l.Size, Total: l.Size})
			}
			emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: lp}})
			if at == jobspec.StateImporting {
				emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateImporting})
			}
		}
		for {
			var c jobspec.Control
			if err := dec.Decode(&c); err != nil || c.Kind == jobspec.ControlStop {
				break
			}
		}
		stopped <- spec.Host
		emit(jobspec.Event{Kind: jobspec.EventExit})
		p.Exit(errors.New("exit status 3"))
	}
}

func TestEngine_HostStuckInAPhaseFailsAtItsDeadlineAndIsStopped(t *testing.T) {
	for _, c := range []struct {
		name string
		at   jobspec.State // where the daemon hangs
		opts Options
		want string
	}{
		{"checking", jobspec.StateChecking, Options{CheckTimeout: 300 * time.Millisecond}, "checking took more than 300ms"},
		{"importing", jobspec.StateImporting, Options{ImportTimeout: 300 * time.Millisecond}, "importing took more than 300ms"},
		// Every byte in, the loads of the finished layers hang: still
		// downloading as far as the node says, importing in truth.
		{"loading while downloading", jobspec.StateDownloading, Options{ImportTimeout: 300 * time.Millisecond, StallTimeout: time.Hour}, "importing took more than 300ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newTestLab(t, "stuck", "fine")
			stopped := make(chan string, 2)
			l.play("stuck", stuckNode(c.at, stopped))
			l.play("fine", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
			start := time.Now()
			rep, _, err := l.run(t, context.Background(), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			res := map[string]HostResult{}
			for _, h := range rep.Hosts {
				res[h.Host] = h
			}
			if h := res["stuck"]; h.State != HostFailed || !strings.Contains(h.Error, c.want) || !strings.Contains(h.Error, "raise --") {
				t.Errorf("stuck: %s %q; want failed: %s", h.State, h.Error, c.want)
			}
			if h := res["fine"]; h.State != HostDone {
				t.Errorf("fine: %+v", h)
			}
			select {
			case h := <-stopped:
				if h != "stuck" {
					t.Errorf("stopped %s", h)
				}
			default:
				t.Error("the stuck host's node was not told to stop")
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("job took %s", took)
			}
		})
	}
}

func TestEngine_SetupCommandThatHangsFailsTheHostAtTheSetupDeadline(t *testing.T) {
	for _, method := range []string{"probe", "clean", "mkdir", "upload"} {
		t.Run(method, func(t *testing.T) {
			l := newTestLab(t, "slow", "fine")
			slow := l.play("slow", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
			slow.HangOn = method
			// The cleanup of ended jobs runs only where the probe saw one.
			slow.Facts.Leftovers = []string{"/tmp/layercast-ended"}
			l.play("fine", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
			rep, _, err := l.run(t, context.Background(), Options{SetupTimeout: 200 * time.Millisecond, NoNodeCache: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range rep.Hosts {
				switch h.Host {
				case "slow":
					if method == "clean" {
						// Leftovers of ended jobs are only reported:
						// the bounded cleanup gives up and the job goes on.
						if h.State != HostDone {
							t.Errorf("slow: %s %q; want done after the bounded cleanup", h.State, h.Error)
						}
						continue
					}
					if h.State != HostFailed || !strings.Contains(h.Error, "no answer from the host within 200ms") || !strings.Contains(h.Error, "--setup-timeout") {
						t.Errorf("slow: %s %q", h.State, h.Error)
					}
				case "fine":
					if h.State != HostDone {
						t.Errorf("fine: %+v", h)
					}
				}
			}
			if len(slow.WorkDirs()) != 0 || !slow.Closed() {
				t.Errorf("slow host left work dirs %v, closed %v", slow.WorkDirs(), slow.Closed())
			}
		})
	}
}

func TestDeadlines_AConnectedHostWaitsWhileTheSwarmMoves(t *testing.T) {
	l := deadlines{stall: 2 * time.Minute}
	t0 := time.Now()
	now := t0.Add(3 * time.Minute)
	waiting := func(peers int) *hostRecord {
		return &hostRecord{state: HostDownloading, advanced: t0, entered: t0,
			progress: &HostProgress{Peers: peers, Total: 100, Done: 10}}
	}
	// No peer: lost, whatever the others do.
	if err := l.overdue(waiting(0), now, now); err == nil || !strings.Contains(err.Error(), "lost its peers") {
		t.Errorf("no peer, swarm moving: %v; want the host failed as cut off", err)
	}
	if err := l.overdue(&hostRecord{state: HostDownloading, advanced: t0}, now, now); err == nil {
		t.Error("no progress ever, swarm moving: not failed")
	}
	// Peers, and another host got a byte a second ago: it waits its turn.
	if err := l.overdue(waiting(12), now, now.Add(-time.Second)); err != nil {
		t.Errorf("12 peers, swarm moving: %v; want it to wait", err)
	}
	// Peers, but nobody got a byte for longer than the limit: stopped.
	if err := l.overdue(waiting(12), now, t0.Add(30*time.Second)); err == nil || !strings.Contains(err.Error(), "no host of the job") {
		t.Errorf("12 peers, swarm stopped: %v; want the host failed with the swarm named", err)
	}
	// Within the limit nothing fails.
	if err := l.overdue(waiting(0), t0.Add(time.Minute), t0); err != nil {
		t.Errorf("a minute without data: %v", err)
	}
}

func TestDeadlines_ANodeNotHeardFailsForItsSilenceNotItsPeers(t *testing.T) {
	l := deadlinesOf(Options{StallTimeout: 2 * time.Minute})
	t0 := time.Now()
	now := t0.Add(3 * time.Minute)
	rec := func(state HostState, heard time.Time, peers int) *hostRecord {
		return &hostRecord{state: state, advanced: t0, entered: t0, heard: heard,
			progress: &HostProgress{Peers: peers, Total: 100, Done: 10}}
	}
	// Its last progress said no peer, minutes ago: what it says now is
	// unknown, and the reason says so rather than blaming its network.
	for _, state := range []HostState{HostChecking, HostDownloading, HostImporting} {
		if err := l.overdue(rec(state, t0, 0), now, now); err == nil || !strings.Contains(err.Error(), "sent nothing for 3m0s") || strings.Contains(err.Error(), "peers") {
			t.Errorf("%s, unheard for 3m: %v; want it failed as silent", state, err)
		}
	}
	// Heard a second ago, no peer: lost its peers.
	if err := l.overdue(rec(HostDownloading, now.Add(-time.Second), 0), now, now); err == nil || !strings.Contains(err.Error(), "lost its peers") {
		t.Errorf("heard, no peer: %v; want lost its peers", err)
	}
	// Heard, peers, the swarm moves: it waits.
	if err := l.overdue(rec(HostDownloading, now.Add(-time.Second), 12), now, now); err != nil {
		t.Errorf("heard, 12 peers, swarm moving: %v", err)
	}
	// Not heard yet (its node starts), or done: the silence rule is not
	// for them.
	if err := l.overdue(rec(HostUploading, time.Time{}, 12), now, now); err != nil {
		t.Errorf("node not started: %v", err)
	}
	if err := l.overdue(rec(HostDone, t0, 0), now, now); err != nil {
		t.Errorf("done: %v", err)
	}
	// A stall timeout shorter than a node's quiet spells does not turn
	// quiet into silent; none turns the rule off.
	if got := deadlinesOf(Options{StallTimeout: time.Second}).silent; got != jobspec.SilentAfter {
		t.Errorf("silent limit with --stall-timeout 1s: %s, want %s", got, jobspec.SilentAfter)
	}
	if got := deadlinesOf(Options{}).silent; got != 0 {
		t.Errorf("silent limit with no stall timeout: %s, want none", got)
	}
}

func TestHostBook_LastByteIsWhenAnyHostLastReceivedOne(t *testing.T) {
	t0 := time.Now()
	now := t0
	b := newHostBook([]string{"a", "b"}, func() time.Time { return now }, func(Event) {})
	if !b.lastByte.Equal(t0) {
		t.Fatalf("lastByte %v, want the book's start %v", b.lastByte, t0)
	}
	now = t0.Add(time.Second)
	b.progress("a", &HostProgress{Total: 100}) // nothing received yet
	if !b.lastByte.Equal(t0) {
		t.Errorf("after a progress without bytes: lastByte %v, want %v", b.lastByte, t0)
	}
	now = t0.Add(2 * time.Second)
	b.progress("b", &HostProgress{Total: 100, Done: 5})
	now = t0.Add(3 * time.Second)
	b.progress("b", &HostProgress{Total: 100, Done: 5, Peers: 3}) // no new byte
	if want := t0.Add(2 * time.Second); !b.lastByte.Equal(want) {
		t.Errorf("lastByte %v, want %v (b's first bytes)", b.lastByte, want)
	}
}

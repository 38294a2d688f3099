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
	for _, method := range []string{"probe", "clean", "mkdir", "place", "upload"} {
		t.Run(method, func(t *testing.T) {
			l := newTestLab(t, "slow", "fine")
			slow := l.play("slow", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
			slow.HangOn = method
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

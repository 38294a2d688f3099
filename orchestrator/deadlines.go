package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Every phase of a host has a bound, so that one host that hangs (a
// daemon that stopped answering, a link that died, an sshd that stalls)
// never holds the job:
//
//	connect       openssh's ConnectTimeout, per hop and attempt (--connect-timeout)
//	setup         each setup command, through within (--setup-timeout)
//	checking      the watchdog: from the node's start until it downloads (--check-timeout)
//	downloading   the watchdog: no byte for --stall-timeout, while the
//	              host had no peer or no host of the job got a byte
//	running node  the watchdog: no line from the node for --stall-timeout
//	              (at least jobspec.SilentAfter), from checking to done
//	importing     the watchdog: from the last byte in, or from the node's
//	              "importing", until done (--import-timeout)
//
// The watchdog fails such a host in the host book; its node runs on until
// the job's teardown stops it (and kills it if it does not stop).

// ErrHostTimeout marks a host that took longer than a phase's deadline.
var ErrHostTimeout = errors.New("deadline missed")

// deadlines are the watchdog's limits; zero disables one.
type deadlines struct {
	check, stall, imp time.Duration
	// silent: how long a running node may send no line at all.
	silent time.Duration
}

func deadlinesOf(o Options) deadlines {
	l := deadlines{check: o.CheckTimeout, stall: o.StallTimeout, imp: o.ImportTimeout}
	if o.StallTimeout > 0 {
		// A node sends a line every jobspec.ReportEvery at the least: a
		// shorter stall timeout would fail nodes that are only quiet.
		l.silent = max(o.StallTimeout, jobspec.SilentAfter)
	}
	return l
}

// tick is how often the watchdog looks: a quarter of the shortest limit,
// between 50ms and 5s; zero when there is no limit.
func (l deadlines) tick() time.Duration {
	shortest := time.Duration(0)
	for _, d := range []time.Duration{l.check, l.stall, l.imp} {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/4, 50*time.Millisecond), 5*time.Second)
}

// overdue says why a host has been in its state too long, or nil.
// lastByte is when any host of the job last received a byte.
//
// A downloading host that receives nothing is stalled only when it has no
// peer either (it lost its network), or when the whole swarm stopped: in
// a large swarm behind a slow bastion link, a connected host waits minutes
// for pieces to reach its peers while the others move (200 lab hosts at 1
// Mbit/s: all 198 healthy ones failed after 2 minutes, about 12 peers each).
//
// A node that sends nothing at all is judged on that alone: its last
// progress (peers included) is as old as its last line, and it may be
// frozen, starved of CPU, or cut off behind a stalled SSH connection.
func (l deadlines) overdue(r *hostRecord, now, lastByte time.Time) error {
	stalled := r.state == HostDownloading && r.complete.IsZero() && l.stall > 0 && now.Sub(r.advanced) > l.stall
	running := r.state == HostChecking || r.state == HostDownloading || r.state == HostImporting
	switch {
	case running && l.silent > 0 && !r.heard.IsZero() && now.Sub(r.heard) > l.silent:
		return fmt.Errorf("%w: the node sent nothing for %s (it reports at least every %s): the host is frozen or too loaded to run it, its SSH connection stalled, or this machine is too loaded to read it; check the loads, or raise --stall-timeout if the host is only slow", ErrHostTimeout, now.Sub(r.heard).Round(time.Second), jobspec.ReportEvery)
	case stalled && (r.progress == nil || r.progress.Peers == 0):
		return fmt.Errorf("%w: no data for %s while downloading: the host lost its peers and the bastion (check its network), or raise --stall-timeout", ErrHostTimeout, l.stall)
	case stalled && now.Sub(lastByte) > l.stall:
		return fmt.Errorf("%w: no data for %s while downloading, and no host of the job got any either: the swarm stopped (can the hosts reach the bastion's seeder?), or raise --stall-timeout", ErrHostTimeout, l.stall)
	case r.state == HostChecking && l.check > 0 && now.Sub(r.entered) > l.check:
		return fmt.Errorf("%w: checking took more than %s: the node got no answer from the Docker daemon in time (is dockerd hung or overloaded?); raise --check-timeout if it is only slow", ErrHostTimeout, l.check)
	case r.state == HostImporting && l.imp > 0 && now.Sub(r.entered) > l.imp,
		r.state == HostDownloading && !r.complete.IsZero() && l.imp > 0 && now.Sub(r.complete) > l.imp:
		return fmt.Errorf("%w: importing took more than %s: the Docker daemon did not finish loading the image (is dockerd hung or overloaded?); raise --import-timeout if it is only slow", ErrHostTimeout, l.imp)
	}
	return nil
}

// watchHosts fails the hosts that stay in a state longer than l allows,
// until ctx ends or the returned func is called.
func watchHosts(ctx context.Context, book *hostBook, l deadlines) func() {
	every := l.tick()
	if every == 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				names, errs := book.overdue(l)
				for i, h := range names {
					book.fail(h, errs[i])
				}
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done) }
}

// within runs op, one setup command on a host, bounded by limit (none when
// zero). A command the host does not answer in time fails with a reason
// that says so; the callers' wrapping says what was being done.
func within(ctx context.Context, limit time.Duration, op func(ctx context.Context) error) error {
	if limit <= 0 {
		return op(ctx)
	}
	cause := fmt.Errorf("%w: no answer from the host within %s (raise --setup-timeout if it is only slow)", ErrHostTimeout, limit)
	sctx, cancel := context.WithTimeoutCause(ctx, limit, cause)
	defer cancel()
	err := op(sctx)
	if err != nil && ctx.Err() == nil && context.Cause(sctx) == cause && !errors.Is(err, ErrHostTimeout) {
		// The command's error does not say why it ended (only the SSH
		// transport passes the cause on).
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

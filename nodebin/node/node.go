// Package node is the job state machine of the node binary: it reads the
// job spec and control lines on stdin, gets the image into the local Docker
// daemon (from the swarm, or from a registry) or into containerd (from the
// swarm), writes events on stdout, and
// leaves nothing of the job behind when it exits.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/handoff"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// Exit codes of the node binary.
const (
	ExitOK        = 0 // image in place, job stopped by the bastion
	ExitFailed    = 1 // the job failed on this host (EventError says why)
	ExitBadSpec   = 2 // the job spec could not be read or is invalid
	ExitCancelled = 3 // stopped before done: bastion stop, bastion gone, or a signal
)

// cleanupTimeout bounds the cleanup after a failure or cancel.
const cleanupTimeout = 45 * time.Second

var (
	// ErrStopped is the cause of a job stopped by a ControlStop line.
	ErrStopped = errors.New("stopped by the bastion")
	// ErrBastionGone is the cause when stdin closed, stdout broke, or no
	// control line arrived within the heartbeat timeout.
	ErrBastionGone = errors.New("bastion gone")
	// ErrBadSpec marks a job spec the node cannot act on.
	ErrBadSpec = errors.New("bad job spec")
	// ErrNoSpace means a filesystem of the host is too small for the job.
	ErrNoSpace = errors.New("not enough disk space")
)

// Leecher is the job's BitTorrent client (nodebin/swarm).
type Leecher interface {
	// Download fetches and verifies the layers, calling onDone per layer
	// as it completes; the client seeds them until Close.
	Download(ctx context.Context, layers []jobspec.Layer, onDone func(jobspec.Layer, string)) error
	Stats() jobspec.Progress
	Close() error
}

// DockerAPI is the Docker client the node uses.
type DockerAPI interface {
	dockerimage.API
	Close() error
}

// Options wires a node to its surroundings.
type Options struct {
	Stdin  io.Reader
	Stdout io.Writer
	Log    *slog.Logger
	// Docker connects to the daemon; host is the spec's DockerHost.
	Docker func(ctx context.Context, host string) (DockerAPI, error)
	// Containerd connects to containerd as the spec says (runtime
	// containerd); nil: the node imports into Docker only.
	Containerd func(ctx context.Context, spec *jobspec.Spec) (Runtime, error)
	// Swarm starts the job's BitTorrent client with its files in dir.
	Swarm func(ctx context.Context, spec *jobspec.Spec, dir string) (Leecher, error)
	// Ticks returns the channel pacing progress events and its stop
	// function; nil means a time.Ticker.
	Ticks func(d time.Duration) (<-chan time.Time, func())
	// Serial turns off loading downloaded layer prefixes while later
	// layers are still downloading: one load at the end.
	Serial bool
	// JobID is the job named on the command line (jobspec.NodeJobFlag);
	// when set, the spec must be that job's.
	JobID string
}

func (o *Options) defaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Ticks == nil {
		o.Ticks = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
}

// Run runs one job and returns the process exit code. ctx cancelled with a
// cause (a signal) stops the job like a ControlStop.
func Run(ctx context.Context, opts Options) int {
	opts.defaults()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ev := newEmitter(opts.Stdout, func(err error) {
		cancel(fmt.Errorf("%w: write event: %w", ErrBastionGone, err))
	})

	dec := jobspec.NewDecoder(opts.Stdin)
	var spec jobspec.Spec
	if err := dec.Decode(&spec); err != nil {
		ev.fail(fmt.Sprintf("read job spec: %v", err))
		ev.emit(jobspec.Event{Kind: jobspec.EventExit})
		return ExitBadSpec
	}
	log := opts.Log.With("job", spec.JobID, "host", spec.Host)
	controls := make(chan jobspec.Control, 4)
	go watchControl(ctx, dec, spec.Heartbeat.Or(jobspec.DefaultHeartbeat), cancel, controls, log)

	j := &job{opts: opts, spec: &spec, ev: ev, log: log, prog: &progress{}, controls: controls}
	j.stopProgress = j.reportProgress(ctx)
	defer j.stopProgress()
	return j.run(ctx, j.steps())
}

// job is what the steps share.
type job struct {
	opts Options
	spec *jobspec.Spec
	ev   *emitter
	log  *slog.Logger
	prog *progress
	// stopProgress ends the progress events; idempotent.
	stopProgress func()

	rt       Runtime
	imp      Import              // p2p mode's import into rt
	imported bool                // imp committed: the image is in place
	daemon   *dockerimage.Daemon // Docker's, for registry mode
	undo     *dockerimage.Undo   // registry mode's
	ref      string              // the tag to give the image
	present  int                 // leading layers the daemon has
	imageID  string              // as checked in the daemon (registry mode)
	leecher  Leecher
	// controls carries the bastion's ControlTorrents lines.
	controls chan jobspec.Control
	handoff  *handoff.Server // serving the node binary; nil when not
	torrents *torrentsStep   // p2p mode's
}

// step is one stage of a job. Every step that started is cleaned up, in
// reverse order, whatever happens later.
type step interface {
	Title() string
	Run(ctx context.Context) error
}

type cleaner interface {
	Cleanup(ctx context.Context) error
}

func (j *job) steps() []step {
	first := []step{&workDirStep{j: j}, &specStep{j: j}, &markUsedStep{j: j}, &handoffStep{j: j}}
	rest := []step{&connectStep{j: j}, &staleTempsStep{j: j}}
	if j.spec.Mode == "registry" {
		return slices.Concat(first, rest, []step{&pullStep{j: j}, &doneStep{j: j}})
	}
	j.torrents = &torrentsStep{j: j, controls: j.controls}
	return slices.Concat(first, []step{j.torrents}, rest,
		[]step{&checkStep{j: j}, &diskStep{j: j}, &swarmStep{j: j}, &transferStep{j: j}, &doneStep{j: j}})
}

// run runs the steps, reports a failure, cleans up and returns the exit code.
func (j *job) run(ctx context.Context, steps []step) int {
	var started []step
	var runErr error
	for _, s := range steps {
		started = append(started, s)
		j.log.Debug("step", "title", s.Title())
		err := s.Run(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil && !errors.Is(err, ErrBadSpec) {
			err = context.Cause(ctx)
		}
		runErr = fmt.Errorf("%s: %w", s.Title(), err)
		break
	}
	j.stopProgress()
	code := ExitOK
	switch {
	case runErr == nil:
	case j.prog.isDone() && errors.Is(runErr, ErrStopped):
		runErr = nil
	case j.prog.isDone() && ctx.Err() != nil:
		// The image is in place; only the seeding was cut short.
		j.log.Warn("ended after the image was in place", "cause", context.Cause(ctx))
		j.ev.emit(jobspec.Event{Kind: jobspec.EventLog, Message: fmt.Sprintf("ended while seeding: %v", context.Cause(ctx))})
		runErr, code = nil, ExitCancelled
	case errors.Is(runErr, ErrBadSpec):
		code = ExitBadSpec
	case ctx.Err() != nil:
		code = ExitCancelled
	default:
		code = ExitFailed
	}
	if runErr != nil {
		j.log.Error("job failed", "err", runErr)
		j.ev.fail(runErr.Error())
	}

	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	for i := len(started) - 1; i >= 0; i-- {
		c, ok := started[i].(cleaner)
		if !ok {
			continue
		}
		if err := c.Cleanup(cctx); err != nil {
			j.log.Error("cleanup", "step", started[i].Title(), "err", err)
			j.ev.emit(jobspec.Event{Kind: jobspec.EventLog, Message: fmt.Sprintf("cleanup after %s: %v", started[i].Title(), err)})
			if code == ExitOK {
				code = ExitFailed
			}
		}
	}
	j.ev.emit(jobspec.Event{Kind: jobspec.EventExit})
	return code
}

// watchControl reads control lines until ctx ends, cancelling the job on
// ControlStop, at the end of stdin, or when no line arrived for heartbeat;
// ControlTorrents lines go to torrents.
func watchControl(ctx context.Context, dec *jobspec.Decoder, heartbeat time.Duration, cancel context.CancelCauseFunc, torrents chan<- jobspec.Control, log *slog.Logger) {
	lines := make(chan jobspec.Control)
	readErr := make(chan error, 1)
	go func() {
		for {
			var c jobspec.Control
			if err := dec.Decode(&c); err != nil {
				readErr <- err
				return
			}
			select {
			case lines <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	timer := time.NewTimer(heartbeat)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-lines:
			timer.Reset(heartbeat)
			switch c.Kind {
			case jobspec.ControlStop:
				log.Info("stop from the bastion")
				cancel(ErrStopped)
				return
			case jobspec.ControlHeartbeat:
			case jobspec.ControlTorrents:
				// The bastion sends one and waits for the node's answer.
				select {
				case torrents <- c:
				default:
					log.Warn("torrents line dropped: an earlier one is unread")
				}
			default:
				log.Warn("unknown control line", "kind", c.Kind)
			}
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				cancel(fmt.Errorf("%w: stdin closed", ErrBastionGone))
			} else {
				cancel(fmt.Errorf("%w: read control line: %w", ErrBastionGone, err))
			}
			return
		case <-timer.C:
			cancel(fmt.Errorf("%w: no control line for %s", ErrBastionGone, heartbeat))
			return
		}
	}
}

func writePid(dir string) error {
	return os.WriteFile(dir+"/"+jobspec.PidFile, fmt.Appendf(nil, "%d\n", os.Getpid()), 0o644)
}

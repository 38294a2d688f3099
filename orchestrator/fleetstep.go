package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// fleetStep runs every host's pipeline (hoststeps.go) through the fan-out
// and follows the hosts until every one is done or failed. Hosts never wait
// for each other. Its cleanup is every host's teardown: the cleanups of the
// steps that host started.
type fleetStep struct {
	book  *hostBook
	nodes *nodeassets.Set
	// bins is where hosts get the node binary from, torrents the layers'
	// torrents; their reports say how.
	bins, torrents *binSources

	hosts []*hostRun
	// stopHosts ends the hosts' pipelines: their nodes keep running until
	// teardown stops them.
	stopHosts context.CancelFunc
	// done is closed when every host's pipeline returned.
	done chan struct{}
}

func (s *fleetStep) Title() string { return "reach the fleet and run the node on every host" }

func (s *fleetStep) Run(ctx context.Context, j *job) error {
	fan := newFanOut(j.opts.Concurrency, j.opts.UploadConcurrency)
	var auth string
	if j.mode == ModeRegistry {
		var err error
		switch reg := registryHost(j.opts.Image); {
		case loopbackRegistry(reg):
			// Each host's loopback is its own registry (a local mirror,
			// say): the bastion's credentials for its own mean nothing
			// there, and must not travel.
			j.log.Warn("registry on loopback: the bastion's credentials for it are not sent to the hosts", "registry", reg)
		default:
			if auth, err = registryAuth(j.opts.Image); err != nil {
				// The pull may not need credentials; the hosts will tell.
				j.log.Warn("registry credentials", "err", err)
			}
		}
	}
	s.bins, s.torrents = newBinSources(), newTorrentSources()
	steps := hostSteps(j, s.book, s.nodes, fan, s.bins, s.torrents, auth)
	for _, h := range j.hosts {
		hr := &hostRun{host: h, log: j.log.With(slog.String("host", h.Name)), ran: make(chan struct{})}
		hr.pipeline = &pipeline[*hostRun]{x: hr, steps: steps, starting: func(s step[*hostRun]) {
			hr.log.Debug("host step", slog.String("title", s.Title()))
		}}
		s.hosts = append(s.hosts, hr)
	}
	if j.served != nil {
		defer reportSeeder(ctx, j.served.seederStats, j.emit)()
	}

	hctx, stop := context.WithCancel(ctx)
	s.stopHosts, s.done = stop, make(chan struct{})
	go func() {
		defer close(s.done)
		// Every host's setup needs the node binary's sha256, which takes
		// unpacking it (half a CPU-second). Read now, for the bastion's
		// own architecture (the likely one), it overlaps the hosts' SSH
		// handshakes; read on demand, it held all 40 lab hosts until the
		// first reached it, then released them at once.
		var prefetch sync.WaitGroup
		prefetch.Go(func() { s.nodes.Prefetch(runtime.GOARCH) })
		defer prefetch.Wait()
		fan.each(hctx, len(s.hosts), func(ctx context.Context, i int, release func()) error {
			hr := s.hosts[i]
			defer close(hr.ran)
			hr.release = release
			err := s.runHost(ctx, hr, j.emit)
			if err != nil && ctx.Err() == nil {
				hr.log.Warn("host failed", "err", err)
				s.book.fail(hr.host.Name, err)
			}
			return err
		})
		for _, hr := range s.hosts {
			select {
			case <-hr.ran:
			default: // never started
				close(hr.ran)
			}
		}
	}()

	stopWatch := watchHosts(ctx, s.book, deadlinesOf(j.opts))
	defer stopWatch()
	if !s.book.waitAll(ctx.Done()) {
		// Before teardown stops the nodes: a node stopped now reports a
		// failure, but the host was cancelled.
		s.book.cancelRest(cancelReason(ctx.Err(), j.opts.Timeout))
		return ctx.Err()
	}
	return nil
}

// Cleanup tears every host down at once: it ends the pipelines, then runs
// each host's step cleanups and reports the host's teardown in one line.
func (s *fleetStep) Cleanup(ctx context.Context, j *job) {
	if s.done == nil {
		return
	}
	s.stopHosts()
	var wg sync.WaitGroup
	for _, hr := range s.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.emit(Event{Kind: EventTeardown, Host: hr.host.Name, Message: hr.teardown(ctx)})
		}()
	}
	wg.Wait()
	<-s.done
}

// maxRedials bounds how often a host is set up again on a fresh SSH
// connection after it lost one (runHost).
const maxRedials = 2

// redialPause is the wait before such a new connection: a link that just
// dropped a connection is likely still busy.
const redialPause = 3 * time.Second

// runHost runs the host's pipeline. When its SSH connection is lost, it
// closes it, forgets what the attempt learnt and runs the pipeline again
// on a fresh connection, up to maxRedials times: on a bastion link crowded
// by 200 hosts, a few connections back off past the keepalive limit, and a
// new one gets through (docs/SCALE.md). What the lost attempt may have
// written on the host (its work dir, a node still running from it, that
// node's temporary images) is cleared over the new connection before the
// new attempt writes anything (workDirStep). A host the watchdog or its
// node already failed is not set up again.
func (s *fleetStep) runHost(ctx context.Context, hr *hostRun, emit func(Event)) error {
	var firstLost error
	for attempt := 0; ; attempt++ {
		_, err := hr.pipeline.run(ctx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if attempt == maxRedials || !errors.Is(err, openssh.ErrConnectionLost) || s.book.state(hr.host.Name).Terminal() {
			if firstLost != nil {
				return fmt.Errorf("%w (attempt %d of %d; the first ended: %v)", err, attempt+1, maxRedials+1, firstLost)
			}
			return err
		}
		if firstLost == nil {
			firstLost = err
		}
		left := hr.left.add(hr.dirAsked, hr.nodeAsked)
		what := "nothing was written on the host yet"
		if len(left.dirs) > 0 {
			what = "what it wrote there is cleared first"
		}
		hr.log.Warn("SSH connection lost; connecting again", "err", err, "attempt", attempt+1, "left", left.dirs)
		emit(Event{Kind: EventHostLog, Host: hr.host.Name,
			Message: fmt.Sprintf("%v; connecting again, %s (%d of %d)", err, what, attempt+1, maxRedials)})
		hr.lost = true
		hr.pipeline.cleanup(context.WithoutCancel(ctx)) // closes the lost connection
		hr.forget(left)
		s.book.restart(hr.host.Name)
		select {
		case <-time.After(redialPause):
		case <-ctx.Done():
			return err
		}
	}
}

// leftAttempt is what attempts on lost SSH connections may have left on a
// host: work dirs, and whether a node ran from one (its temporary images).
type leftAttempt struct {
	dirs []string
	node bool
}

// add returns l with an attempt's work dir ("" when it made none) and
// whether it started a node.
func (l leftAttempt) add(dir string, node bool) leftAttempt {
	if dir != "" && !slices.Contains(l.dirs, dir) {
		l.dirs = append(slices.Clip(l.dirs), dir)
	}
	l.node = l.node || node
	return l
}

// hostRun is one host's part of the job, shared by the steps of its
// pipeline. The fields after pipeline are each written by one step and
// read by the later ones and by the cleanups.
type hostRun struct {
	host inventory.Host
	log  *slog.Logger
	// release hands the host's fan-out slot back once its setup is done.
	release func()
	// ran is closed when the pipeline's run returned (or never started).
	ran      chan struct{}
	pipeline *pipeline[*hostRun]

	conn     Conn               // connectStep
	facts    hostops.Facts      // probeStep
	image    *imagecache.Image  // probeStep: the image for its platform (p2p)
	binary   *nodeassets.Binary // nodeBinaryStep
	cacheDir string             // nodeBinaryStep: the host's node cache, "" for none
	// dirAsked is the work dir workDirStep asked the host for, made or
	// not; dir is set once it was made.
	dirAsked string
	dir      string
	nodeBin  string // workDirStep: the node binary's path
	// nodeCached: nodeBin holds the binary already (workDirStep).
	nodeCached bool
	// started is the node workDirStep started from the node cache in the
	// session that made the work dir; startStep follows it.
	started openssh.Process
	node    *node    // startStep
	torn    []string // what the cleanups did, for the teardown line
	// nodeAsked: workDirStep or startStep sent the command that starts
	// the node. A node may run on the host even when the answer was lost
	// (node is nil).
	nodeAsked bool

	// left is what earlier attempts, whose SSH connections were lost, may
	// have left on the host; workDirStep clears it (runHost).
	left leftAttempt
	// lost: this attempt's SSH connection is gone. Its cleanups skip what
	// needs the host; the next attempt does that over its own.
	lost bool
}

// teardown runs the cleanups of the steps the host started and returns a
// line for the operator.
func (hr *hostRun) teardown(ctx context.Context) string {
	select {
	case <-hr.ran:
	case <-ctx.Done():
		return "its setup did not end before the teardown's time ran out; nothing was torn down"
	}
	if hr.node == nil {
		hr.torn = append(hr.torn, "nothing was started")
	}
	hr.pipeline.cleanup(ctx)
	return strings.Join(hr.torn, "")
}

// forget drops what a failed attempt of the pipeline learnt about the host
// (every field its steps write) before it is set up again (runHost); its
// steps were cleaned up. left is what the attempts so far left there.
func (hr *hostRun) forget(left leftAttempt) {
	*hr = hostRun{host: hr.host, log: hr.log, release: hr.release, ran: hr.ran, pipeline: hr.pipeline, left: left}
}

// note adds to the teardown line.
func (hr *hostRun) note(s string) { hr.torn = append(hr.torn, s) }

// reportSeeder emits the seeder's stats twice a second until the returned
// func is called.
func reportSeeder(ctx context.Context, stats func() SeederStats, emit func(Event)) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				st := stats()
				emit(Event{Kind: EventSeeder, Seeder: &st})
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// cancelReason is what a host cancelled by the end of the job's context
// reports.
func cancelReason(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("the job's --timeout of %s ran out", timeout)
	}
	return "cancelled by the operator"
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
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
	// bins is where hosts get the node binary from; its report says how.
	bins *binSources

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
	s.bins = newBinSources()
	steps := hostSteps(j, s.book, s.nodes, fan, s.bins, auth)
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

// runHost runs the host's pipeline. When the SSH connection was lost
// before anything was written on the host (redialable), it closes it, forgets
// what the attempt learnt and runs the pipeline again on a fresh connection,
// up to maxRedials times: on a bastion link crowded by 200 hosts' setup,
// a few connections back off past the keepalive limit, and a new one
// gets through (docs/SCALE.md).
func (s *fleetStep) runHost(ctx context.Context, hr *hostRun, emit func(Event)) error {
	for attempt := 0; ; attempt++ {
		failed, err := hr.pipeline.run(ctx)
		if err == nil || attempt == maxRedials || ctx.Err() != nil || !redialable(failed, err) {
			return err
		}
		hr.log.Warn("SSH connection lost before anything was written on the host; connecting again", "err", err, "attempt", attempt+1)
		emit(Event{Kind: EventHostLog, Host: hr.host.Name,
			Message: fmt.Sprintf("%v; nothing was written on the host yet, connecting again (%d of %d)", err, attempt+1, maxRedials)})
		hr.pipeline.cleanup(context.WithoutCancel(ctx)) // closes the lost connection
		hr.forget()
		select {
		case <-time.After(redialPause):
		case <-ctx.Done():
			return err
		}
	}
}

// redialable says whether a host whose pipeline failed at step with err
// can be set up again from the start: its SSH connection was lost, and no
// step that writes on the host (the work dir and after) had started.
func redialable(failed step[*hostRun], err error) bool {
	if !errors.Is(err, openssh.ErrConnectionLost) {
		return false
	}
	switch failed.(type) {
	case probeStep, nodeBinaryStep:
		return true
	}
	return false
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
	dir      string             // workDirStep
	nodeBin  string             // workDirStep: the node binary's path
	// nodeCached: nodeBin holds the binary already (workDirStep).
	nodeCached bool
	node       *node    // startStep
	torn       []string // what the cleanups did, for the teardown line
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
// steps were cleaned up.
func (hr *hostRun) forget() {
	*hr = hostRun{host: hr.host, log: hr.log, release: hr.release, ran: hr.ran, pipeline: hr.pipeline}
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

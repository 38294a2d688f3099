package orchestrator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/fleet"
	"github.com/layercast/layercast/orchestrator/inventory"
)

// Timings of the node protocol.
const (
	heartbeatEvery = time.Second
	// nodeHeartbeatTimeout: a node that hears nothing for this long assumes
	// the bastion died and removes itself.
	nodeHeartbeatTimeout = 15 * time.Second
	// nodeStopGrace: how long a node gets to stop, clean up and exit.
	nodeStopGrace = 15 * time.Second
	stderrTail    = 4 << 10
)

// fleetStep reaches every host, runs the node binary there and follows it
// until every host is done or failed. Hosts never wait for each other.
type fleetStep struct {
	mu    sync.Mutex
	hosts []*hostRun
	wg    sync.WaitGroup
	// registryAuth is the X-Registry-Auth for registry mode ("" for none).
	registryAuth string
}

// hostRun is one host's side of the job.
type hostRun struct {
	host  inventory.Host
	log   *slog.Logger
	conn  fleet.Conn
	dir   string
	proc  fleet.Process
	stdin *lineWriter
	// exited is closed when the node's stdout ended.
	exited chan struct{}
	// sawExit is closed when the node said it cleaned up and exits; a
	// node that ends without saying so may have left temporary images.
	sawExit chan struct{}
	jobID   string
	stderr  *tailBuffer
	// stderrDone is closed when the node's stderr ended.
	stderrDone chan struct{}
	// setupDone is closed when the host's setup (connect to start) ended,
	// either way; teardown waits for it so nothing starts after it.
	setupDone chan struct{}
}

func (s *fleetStep) Title() string { return "reach the fleet and run the node on every host" }

func (s *fleetStep) Run(ctx context.Context, j *job) error {
	slots := semaphore.NewWeighted(int64(j.opts.Concurrency))
	allowed := j.allowedIPs(ctx)
	if j.mode == ModeRegistry {
		auth, err := registryAuth(j.opts.Image)
		if err != nil {
			// The pull may not need credentials; the hosts will tell.
			j.log.Warn("registry credentials", "err", err)
		}
		s.registryAuth = auth
	}
	stopSeeder := j.serve.report(ctx, j)
	defer stopSeeder()
	for _, h := range j.hosts {
		hr := &hostRun{host: h, jobID: j.id, log: j.log.With(slog.String("host", h.Name)), exited: make(chan struct{}), sawExit: make(chan struct{}), stderr: &tailBuffer{max: stderrTail}, stderrDone: make(chan struct{}), setupDone: make(chan struct{})}
		s.mu.Lock()
		s.hosts = append(s.hosts, hr)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.runHost(ctx, j, hr, slots, allowed); err != nil && ctx.Err() == nil {
				hr.log.Warn("host failed", "err", err)
				j.book.fail(h.Name, err)
			}
		}()
	}
	stopWatch := j.watchStalls(ctx)
	defer stopWatch()
	if !j.book.waitAll(ctx.Done()) {
		// Before teardown stops the nodes: a node stopped now reports a
		// failure, but the host was cancelled.
		j.book.cancelRest(cancelReason(ctx.Err(), j.opts.Timeout))
		return ctx.Err()
	}
	return nil
}

// watchStalls fails hosts that download nothing for Options.StallTimeout:
// a host that lost its network must not hold the whole job forever. Its
// node is stopped at teardown, which removes whatever it had.
func (j *job) watchStalls(ctx context.Context) func() {
	limit := j.opts.StallTimeout
	if limit <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(min(limit/4, 5*time.Second))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				for _, h := range j.book.stalled(limit) {
					j.book.fail(h, fmt.Errorf("no data for %s while downloading: the host lost its peers and the bastion (check its network), or raise --stall-timeout", limit))
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

// cancelReason is what a host cancelled by the end of the job's context
// reports.
func cancelReason(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("the job's --timeout of %s ran out", timeout)
	}
	return "cancelled by the operator"
}

// runHost takes one host from connecting to done. The setup (connect,
// probe, upload, start) holds a concurrency slot; following the node does
// not.
func (s *fleetStep) runHost(ctx context.Context, j *job, hr *hostRun, slots *semaphore.Weighted, allowed []string) error {
	name := hr.host.Name
	if err := slots.Acquire(ctx, 1); err != nil {
		close(hr.setupDone)
		return err
	}
	release := sync.OnceFunc(func() { slots.Release(1) })
	defer release()
	setupDone := sync.OnceFunc(func() { close(hr.setupDone) })
	defer setupDone()

	j.book.set(name, HostConnecting, "")
	conn, err := j.dialer.Dial(ctx, hr.host)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.mu.Lock()
	hr.conn = conn
	s.mu.Unlock()
	facts, err := conn.Probe(ctx)
	if err != nil {
		return fmt.Errorf("probe host: %w", err)
	}
	if err := facts.Usable(); err != nil {
		return err
	}
	if removed, err := conn.CleanStale(ctx, j.id); err != nil {
		hr.log.Warn("clean up earlier jobs", "err", err)
	} else {
		for _, r := range removed {
			msg := "removed what an earlier job left: " + r.Dir
			if r.Killed {
				msg += fmt.Sprintf(" (stopped its node, pid %d)", r.PID)
			}
			if !r.Removed {
				msg = "could not remove " + r.Dir + " of an earlier job: " + r.Error
			}
			j.emit(Event{Kind: EventHostLog, Host: name, Message: msg})
		}
	}
	if refs, err := conn.RemoveTempImages(ctx, j.id, false); err != nil {
		hr.log.Warn("remove temporary images of earlier jobs", "err", err)
	} else if len(refs) > 0 {
		j.emit(Event{Kind: EventHostLog, Host: name, Message: "removed temporary images an earlier job left: " + strings.Join(refs, ", ")})
	}
	bin, err := j.deps.Nodes.GetContext(ctx, facts.Arch)
	if err != nil {
		return err
	}
	if err := roomForNode(facts.TmpFree, bin.Size+int64(len(bin.Gz))); err != nil {
		return err
	}

	j.book.set(name, HostUploading, "")
	dir, err := conn.MakeWorkDir(ctx, j.id)
	if err != nil {
		return fmt.Errorf("make job dir: %w", err)
	}
	s.mu.Lock()
	hr.dir = dir
	s.mu.Unlock()
	path, err := conn.Upload(ctx, dir, fleet.Binary{Name: "layercast-node", Gzip: bin.Gz, SHA256: bin.SHA256})
	if err != nil {
		return err // says "upload node binary"
	}
	spec, err := j.specFor(ctx, hr, conn, facts, dir, allowed, s.registryAuth)
	if err != nil {
		return err
	}
	proc, err := conn.Start(ctx, fleet.Command{Path: path, Become: hr.host.Become})
	if err != nil {
		return fmt.Errorf("start node binary: %w", err)
	}
	s.mu.Lock()
	hr.proc = proc
	hr.stdin = &lineWriter{enc: jobspec.NewEncoder(proc.Stdin())}
	s.mu.Unlock()
	release()
	setupDone()

	go hr.drainStderr(proc.Stderr())
	// A node that dies at once fails the write; its stdout and stderr then
	// tell why, so follow it either way.
	if err := hr.stdin.send(spec); err != nil {
		hr.log.Debug("send job spec", "err", err)
	} else {
		go hr.heartbeat(ctx)
	}
	return s.follow(j, hr, proc.Stdout())
}

// follow turns the node's events into the job's events until its stdout
// ends.
func (s *fleetStep) follow(j *job, hr *hostRun, stdout io.Reader) error {
	defer close(hr.exited)
	name := hr.host.Name
	dec := jobspec.NewDecoder(stdout)
	for {
		var ev jobspec.Event
		err := dec.Decode(&ev)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read node events: %w", err)
		}
		switch ev.Kind {
		case jobspec.EventState:
			switch ev.State {
			case jobspec.StateChecking:
				j.book.set(name, HostChecking, ev.Message)
			case jobspec.StateDownloading:
				j.book.set(name, HostDownloading, ev.Message)
			case jobspec.StateImporting:
				j.book.set(name, HostImporting, ev.Message)
			case jobspec.StateDone:
				if j.image != nil && ev.ImageID != j.image.ID {
					return fmt.Errorf("node reports image %s, bastion has %s", ev.ImageID, j.image.ID)
				}
				j.book.setImageID(name, ev.ImageID)
				j.book.set(name, HostDone, "")
			case jobspec.StateFailed:
				j.book.set(name, HostFailed, ev.Message)
			}
		case jobspec.EventProgress:
			if ev.Progress != nil {
				j.book.progress(name, ev.Progress)
			}
		case jobspec.EventLog:
			j.emit(Event{Kind: EventHostLog, Host: name, Message: ev.Message})
		case jobspec.EventError:
			j.book.set(name, HostFailed, ev.Message)
		case jobspec.EventExit:
			hr.log.Debug("node exited", "msg", ev.Message)
			select {
			case <-hr.sawExit:
			default:
				close(hr.sawExit)
			}
		}
	}
	if st := j.book.state(name); !st.Terminal() {
		werr := hr.proc.Wait()
		if errors.Is(werr, fleet.ErrConnectionLost) {
			return fmt.Errorf("%w; the node there stops and cleans up by itself within %s", werr, nodeHeartbeatTimeout)
		}
		select {
		case <-hr.stderrDone:
		case <-time.After(2 * time.Second):
		}
		msg := "node binary exited early"
		if werr != nil {
			msg += ": " + werr.Error()
		}
		if tail := hr.stderr.String(); tail != "" {
			msg += "; last output: " + tail
		}
		return errors.New(msg)
	}
	return nil
}

// ErrNoRoom means a host's /tmp cannot hold the node binary.
var ErrNoRoom = errors.New("not enough space in /tmp")

// roomForNode checks, before anything is written, that /tmp (free bytes as
// probed; negative when unknown) can hold the node binary while it
// unpacks. The node itself checks the room for the layers.
func roomForNode(free, need int64) error {
	if free < 0 || free >= need {
		return nil
	}
	return fmt.Errorf("%w: the host has %.1f MB free in /tmp, the node binary needs %.1f MB; free space in /tmp", ErrNoRoom, float64(free)/1e6, float64(need)/1e6)
}

// specFor builds the job spec one host's node reads.
func (j *job) specFor(ctx context.Context, hr *hostRun, conn fleet.Conn, facts fleet.Facts, dir string, allowed []string, auth string) (*jobspec.Spec, error) {
	spec := &jobspec.Spec{
		Version:       jobspec.Version,
		JobID:         j.id,
		Host:          hr.host.Name,
		Image:         j.opts.Image,
		Mode:          string(j.mode),
		DockerHost:    hr.host.DockerHost,
		WorkDir:       dir,
		Heartbeat:     jobspec.Duration(nodeHeartbeatTimeout),
		ProgressEvery: jobspec.Duration(250 * time.Millisecond),
		PublicIP:      facts.ServerIP,
	}
	if j.image != nil {
		spec.ImageID, spec.Config = j.image.ID, j.config
	}
	if j.mode == ModeRegistry {
		// On the node's stdin only: never in arguments or files.
		spec.RegistryAuth = auth
		return spec, nil
	}
	spec.Layers = j.serve.layers
	trackerAddr, seederAddr := j.serve.trackerAddr, j.serve.seederAddr
	if j.opts.Tunnel {
		tf, err := conn.Forward(ctx, trackerAddr)
		if err != nil {
			return nil, fmt.Errorf("forward tracker port: %w", err)
		}
		sf, err := conn.Forward(ctx, seederAddr)
		if err != nil {
			return nil, fmt.Errorf("forward seeder port: %w", err)
		}
		tp, sp := tf.RemotePort(), sf.RemotePort()
		spec.Announce = j.serve.announceURL(net.JoinHostPort("127.0.0.1", strconv.Itoa(tp)))
		spec.Seeders = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(sp))}
		spec.AllowedIPs = append(append([]string(nil), allowed...), "127.0.0.1")
		return spec, nil
	}
	bastion := j.opts.BastionAddr
	if bastion == "" {
		bastion = facts.ClientIP
	}
	if bastion == "" {
		return nil, errors.New("cannot tell the bastion's address from the SSH connection; pass --bastion-addr or --tunnel")
	}
	spec.Announce = j.serve.announceURL(net.JoinHostPort(bastion, portOf(trackerAddr)))
	spec.Seeders = []string{net.JoinHostPort(bastion, portOf(seederAddr))}
	spec.AllowedIPs = append(append([]string(nil), allowed...), bastion)
	return spec, nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// allowedIPs resolves every host of the job, so nodes accept each other and
// no one else. A host whose name the bastion cannot resolve is left out,
// with a warning: it still gets the image from the bastion and from the
// peers it dials.
func (j *job) allowedIPs(ctx context.Context) []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.allowed == nil {
		j.allowed = j.resolveHosts(ctx)
	}
	return j.allowed
}

// resolveHosts lists the addresses of the job's hosts that the bastion can
// resolve.
func (j *job) resolveHosts(ctx context.Context) []string {
	out := []string{}
	for _, h := range j.hosts {
		addr := h.Address
		if addr == "" {
			addr = h.Name
		}
		if r, ok := j.dialer.(interface {
			Resolve(inventory.Host) (fleet.Target, error)
		}); ok {
			if t, err := r.Resolve(h); err == nil && t.HostName != "" {
				addr = t.HostName
			}
		}
		if ip := net.ParseIP(addr); ip != nil {
			out = append(out, ip.String())
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, addr)
		if err != nil {
			j.log.Warn("cannot resolve host for the peer allow list", "host", h.Name, "addr", addr, "err", err)
			continue
		}
		out = append(out, ips...)
	}
	return out
}

func (s *fleetStep) Cleanup(ctx context.Context, j *job) {
	s.mu.Lock()
	hosts := append([]*hostRun(nil), s.hosts...)
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, hr := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-hr.setupDone:
			case <-ctx.Done():
			}
			s.mu.Lock()
			snap := *hr
			s.mu.Unlock()
			msg := snap.teardown(ctx)
			j.emit(Event{Kind: EventTeardown, Host: hr.host.Name, Message: msg})
		}()
	}
	wg.Wait()
	s.wg.Wait()
}

// teardown stops the node, removes the job dir and closes SSH. It returns a
// line for the operator.
func (hr *hostRun) teardown(ctx context.Context) string {
	msg := "nothing was started"
	if hr.proc != nil {
		_ = hr.stdin.send(jobspec.Control{Kind: jobspec.ControlStop})
		hr.stdin.close()
		sctx, cancel := context.WithTimeout(ctx, nodeStopGrace)
		select {
		case <-hr.exited:
		case <-sctx.Done():
		}
		if err := hr.proc.Stop(sctx); err != nil {
			hr.log.Warn("stop node", "err", err)
		}
		cancel()
		msg = "node stopped"
		select {
		case <-hr.sawExit:
		default:
			// The node died without cleaning up: what it loaded into the
			// daemon for this job is still there.
			if hr.conn != nil {
				if refs, err := hr.conn.RemoveTempImages(ctx, hr.jobID, true); err != nil {
					hr.log.Warn("remove temporary images", "err", err)
					msg += "; could not remove its temporary images: " + err.Error()
				} else if len(refs) > 0 {
					msg += ", its temporary images " + strings.Join(refs, ", ") + " removed"
				}
			}
		}
	}
	if hr.dir != "" && hr.conn != nil {
		if err := hr.conn.RemoveWorkDir(ctx, hr.dir); err != nil {
			hr.log.Warn("remove job dir", "dir", hr.dir, "err", err)
			msg += "; could not remove " + hr.dir + ": " + err.Error()
		} else {
			msg += ", " + hr.dir + " removed"
		}
	}
	if hr.conn != nil {
		_ = hr.conn.Close()
		msg += ", SSH closed"
	}
	return msg
}

// heartbeat tells the node the bastion is alive until the stream closes.
func (hr *hostRun) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := hr.stdin.send(jobspec.Control{Kind: jobspec.ControlHeartbeat}); err != nil {
				return
			}
		case <-hr.exited:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (hr *hostRun) drainStderr(r io.Reader) {
	defer close(hr.stderrDone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// The tail explains a node that died: its progress logs do not.
		if !routineLog(line) {
			hr.stderr.add(line)
		}
		hr.log.Debug("node", "stderr", line)
	}
}

// routineLog reports whether a line of the node's stderr is one of its
// info or debug log records (slog's text format).
func routineLog(line string) bool {
	return strings.HasPrefix(line, "time=") && (strings.Contains(line, " level=INFO ") || strings.Contains(line, " level=DEBUG "))
}

// lineWriter serialises writes of JSON lines to a node's stdin.
type lineWriter struct {
	mu     sync.Mutex
	enc    *jobspec.Encoder
	closed bool
}

func (w *lineWriter) send(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return io.ErrClosedPipe
	}
	return w.enc.Encode(v)
}

func (w *lineWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// tailBuffer keeps the last lines of a stream up to max bytes.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	size  int
}

func (b *tailBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	b.size += len(line) + 1
	for b.size > b.max && len(b.lines) > 1 {
		b.size -= len(b.lines[0]) + 1
		b.lines = b.lines[1:]
	}
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.lines)
	if n > 3 {
		n = 3
	}
	out := ""
	for i, l := range b.lines[len(b.lines)-n:] {
		if i > 0 {
			out += " | "
		}
		out += l
	}
	return out
}

package hostops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// FakeDialer stands in for Dialer in tests of the orchestrator: it hands
// out FakeConns by host name and fails the hosts listed in Errs.
type FakeDialer struct {
	mu sync.Mutex
	// Conns are handed out by host name; a host without one gets a new
	// FakeConn with linux/amd64 facts and direct docker access.
	Conns map[string]*FakeConn
	// Errs makes Dial fail for a host.
	Errs map[string]error
	// KeysErr is what CheckKeys returns.
	KeysErr error
	// Dialed lists the hosts dialled, in order.
	Dialed []string
	// Redials lists, per host, the conns that the dials after its first
	// hand out in turn (a fresh connection after one was lost); once used
	// up, the last conn handed out is handed out again.
	Redials map[string][]*FakeConn
}

// Resolve says the host is reached at its address (or name), as written.
func (d *FakeDialer) Resolve(h inventory.Host) (openssh.Target, error) {
	addr := h.Address
	if addr == "" {
		addr = h.Name
	}
	return openssh.Target{Alias: h.Name, HostName: addr, Port: 22}, nil
}

// CheckKeys returns KeysErr.
func (d *FakeDialer) CheckKeys([]inventory.Host) error { return d.KeysErr }

func (d *FakeDialer) Dial(ctx context.Context, h inventory.Host) (*FakeConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.Dialed = append(d.Dialed, h.Name)
	if err := d.Errs[h.Name]; err != nil {
		return nil, err
	}
	if d.Conns == nil {
		d.Conns = map[string]*FakeConn{}
	}
	if next := d.Redials[h.Name]; len(next) > 0 && slices.Contains(d.Dialed[:len(d.Dialed)-1], h.Name) {
		d.Conns[h.Name], d.Redials[h.Name] = next[0], next[1:]
	}
	c, ok := d.Conns[h.Name]
	if !ok {
		c = NewFakeConn(h)
		d.Conns[h.Name] = c
	}
	c.mu.Lock()
	c.host = h
	c.mu.Unlock()
	return c, nil
}

// Conn returns the FakeConn of a host, or nil.
func (d *FakeDialer) Conn(host string) *FakeConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Conns[host]
}

// FakeConn stands in for Conn: it records what was asked of it. Set the exported
// fields before use; read the records through the methods.
type FakeConn struct {
	Facts    Facts
	ProbeErr error
	// RunFunc answers Run; nil answers empty output.
	RunFunc   func(ctx context.Context, cmd openssh.Command) ([]byte, error)
	MkdirErr  error
	UploadErr error
	// FetchErr fails every Fetch.
	FetchErr   error
	StartErr   error
	ForwardErr error
	Stale      []StaleDir
	CleanErr   error
	RemoveErr  error
	// TempImages are the daemon's temporary images (jobspec.TempRef);
	// RemoveTempImages removes them. Read them back with TempImagesLeft.
	TempImages []string
	// HangOn names a method ("probe", "clean", "mkdir", "upload") that
	// hangs until its ctx ends, as on a host that stopped
	// answering.
	HangOn string
	// StartFunc plays the started command (for example a fake node that
	// reads the spec from p.StdinReader() and writes events to
	// p.StdoutWriter()); it runs in its own goroutine. Nil: the process
	// just waits to be stopped.
	StartFunc func(ctx context.Context, cmd openssh.Command, p *openssh.FakeProcess)

	mu       sync.Mutex
	host     inventory.Host
	calls    []string
	uploaded map[string]Binary
	fetched  map[string]string // dest: URL
	// files are the node binaries on the host by path, cache included.
	files     map[string]bool
	processes []*openssh.FakeProcess
	forwards  []*openssh.FakeForward
	workDirs  map[string]bool
	closed    bool
}

// NewFakeConn returns a FakeConn for a healthy linux/amd64 host.
func NewFakeConn(h inventory.Host) *FakeConn {
	return &FakeConn{
		host: h,
		Facts: Facts{OS: "linux", Arch: "amd64", Machine: "x86_64", User: "root",
			ServerIP: "192.0.2.10", ClientIP: "192.0.2.1", Docker: DockerDirect, DockerVersion: "20.10.24",
			WorkBase: "/tmp", WorkFree: 10 << 30, WorkBases: workBases(h.WorkDir, "/root/.cache"), CacheHome: ""},
		uploaded: map[string]Binary{},
		fetched:  map[string]string{},
		files:    map[string]bool{},
		workDirs: map[string]bool{},
	}
}

// hang blocks until ctx ends when the method is the one to hang on.
func (c *FakeConn) hang(ctx context.Context, method string) error {
	if c.HangOn != method {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("%s: %w", method, ctx.Err())
}

func (c *FakeConn) record(format string, args ...any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, fmt.Sprintf(format, args...))
	if c.closed {
		return errors.New("fake connection closed")
	}
	return nil
}

// Calls lists the methods called, e.g. "probe", "mkdir JOB SHA", "from
// cache PATH" (StartCached on a hit), "upload
// DEST", "fetch DEST URL", "start CMDLINE", "forward ADDR", "clean
// JOB", "rm DIR", "close".
func (c *FakeConn) Calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.calls...)
}

// Uploaded returns the binaries uploaded, by path.
func (c *FakeConn) Uploaded() map[string]Binary {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]Binary, len(c.uploaded))
	for k, v := range c.uploaded {
		out[k] = v
	}
	return out
}

// Fetched returns the binaries fetched from other hosts: URL by path.
func (c *FakeConn) Fetched() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.fetched))
	for k, v := range c.fetched {
		out[k] = v
	}
	return out
}

// Cache puts a verified node binary at path, as an earlier job would have
// left it in the host's node cache.
func (c *FakeConn) Cache(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[path] = true
}

// Processes returns the processes started, in order.
func (c *FakeConn) Processes() []*openssh.FakeProcess {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*openssh.FakeProcess(nil), c.processes...)
}

// WorkDirs lists the work dirs made and not removed.
func (c *FakeConn) WorkDirs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for d, live := range c.workDirs {
		if live {
			out = append(out, d)
		}
	}
	return out
}

// Closed reports whether Close was called.
func (c *FakeConn) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *FakeConn) Host() inventory.Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.host
}

func (c *FakeConn) Probe(ctx context.Context, askDocker bool) (Facts, error) {
	if err := c.record("probe"); err != nil {
		return Facts{}, err
	}
	if err := c.hang(ctx, "probe"); err != nil {
		return Facts{}, err
	}
	return c.Facts, c.ProbeErr
}

func (c *FakeConn) Run(ctx context.Context, cmd openssh.Command) ([]byte, error) {
	if err := c.record("run %s", cmd); err != nil {
		return nil, err
	}
	if c.RunFunc != nil {
		return c.RunFunc(ctx, cmd)
	}
	return nil, nil
}

func (c *FakeConn) MakeWorkDir(ctx context.Context, base, jobID, cacheDir, sha string) (WorkDir, error) {
	if err := c.record("mkdir %s %s", jobID, sha); err != nil {
		return WorkDir{}, err
	}
	if err := c.hang(ctx, "mkdir"); err != nil {
		return WorkDir{}, err
	}
	if c.MkdirErr != nil {
		return WorkDir{}, c.MkdirErr
	}
	dir := WorkDirPath(base, jobID)
	p := dir + "/" + NodeBinaryName
	if cacheDir != "" {
		p = CachedNodePath(cacheDir, sha)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.workDirs[dir] {
		return WorkDir{}, fmt.Errorf("make work dir %s: exists", dir)
	}
	c.workDirs[dir] = true
	return WorkDir{Path: dir, Node: NodePlace{Path: p, Cached: c.files[p]}}, nil
}

// StartCached is MakeWorkDir and, on a cache hit, Start of the cached
// binary with node's Args and Become, recorded as "mkdir JOB SHA", "from
// cache PATH" and "start CMDLINE".
func (c *FakeConn) StartCached(ctx context.Context, base, jobID, cacheDir, sha string, node openssh.Command) (WorkDir, openssh.Process, error) {
	wd, err := c.MakeWorkDir(ctx, base, jobID, cacheDir, sha)
	if err != nil || !wd.Node.Cached {
		return wd, nil, err
	}
	if err := c.record("from cache %s", wd.Node.Path); err != nil {
		return wd, nil, err
	}
	node.Path = wd.Node.Path
	p, err := c.Start(ctx, node)
	return wd, p, err
}

func (c *FakeConn) NodeCached(ctx context.Context, cacheDir, sha string) (bool, error) {
	if err := c.record("cached %s", sha); err != nil {
		return false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.files[CachedNodePath(cacheDir, sha)], nil
}

func (c *FakeConn) RemoveNodeCache(ctx context.Context, cacheDir string) ([]string, error) {
	if err := c.record("rmcache %s", cacheDir); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var removed []string
	for p := range c.files {
		if strings.HasPrefix(p, cacheDir+"/") {
			removed = append(removed, p)
			delete(c.files, p)
		}
	}
	return removed, nil
}

func (c *FakeConn) Upload(ctx context.Context, dest string, bin Binary) error {
	if err := c.record("upload %s", dest); err != nil {
		return err
	}
	if err := c.hang(ctx, "upload"); err != nil {
		return err
	}
	if c.UploadErr != nil {
		return c.UploadErr
	}
	c.mu.Lock()
	c.uploaded[dest] = bin
	c.files[dest] = true
	c.mu.Unlock()
	return nil
}

func (c *FakeConn) Fetch(ctx context.Context, dest, sha, url string) error {
	if err := c.record("fetch %s %s", dest, url); err != nil {
		return err
	}
	if c.FetchErr != nil {
		return c.FetchErr
	}
	c.mu.Lock()
	c.fetched[dest] = url
	c.files[dest] = true
	c.mu.Unlock()
	return nil
}

func (c *FakeConn) Start(ctx context.Context, cmd openssh.Command) (openssh.Process, error) {
	if err := c.record("start %s", cmd); err != nil {
		return nil, err
	}
	if c.StartErr != nil {
		return nil, c.StartErr
	}
	p := openssh.NewFakeProcess()
	c.mu.Lock()
	c.processes = append(c.processes, p)
	c.mu.Unlock()
	if c.StartFunc != nil {
		go c.StartFunc(ctx, cmd, p)
	}
	return p, nil
}

func (c *FakeConn) Forward(ctx context.Context, localAddr string) (openssh.Forward, error) {
	if err := c.record("forward %s", localAddr); err != nil {
		return nil, err
	}
	if c.ForwardErr != nil {
		return nil, c.ForwardErr
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f := &openssh.FakeForward{Port: 40000 + len(c.forwards), Local: localAddr}
	c.forwards = append(c.forwards, f)
	return f, nil
}

func (c *FakeConn) CleanStale(ctx context.Context, keepJobID string, bases []string) ([]StaleDir, error) {
	if err := c.record("clean %s", keepJobID); err != nil {
		return nil, err
	}
	if err := c.hang(ctx, "clean"); err != nil {
		return nil, err
	}
	return c.Stale, c.CleanErr
}

// TempImagesLeft returns the temporary images still in the fake daemon.
func (c *FakeConn) TempImagesLeft() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.TempImages...)
}

func (c *FakeConn) RemoveTempImages(ctx context.Context, jobID string, only bool, bases []string) ([]string, error) {
	if err := c.record("rmtemp %s %v", jobID, only); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var removed, kept []string
	for _, ref := range c.TempImages {
		if strings.HasPrefix(ref, jobspec.TempRefPrefix(jobID)) == only {
			removed = append(removed, ref)
		} else {
			kept = append(kept, ref)
		}
	}
	c.TempImages = kept
	return removed, nil
}

func (c *FakeConn) RemoveWorkDir(ctx context.Context, dir string) error {
	if err := c.record("rm %s", dir); err != nil {
		return err
	}
	if c.RemoveErr != nil {
		return c.RemoveErr
	}
	c.mu.Lock()
	delete(c.workDirs, dir)
	c.mu.Unlock()
	return nil
}

// StopNode records the call and finds no node: a fake node ends with the
// connection that started it.
func (c *FakeConn) StopNode(ctx context.Context, dir string) (bool, error) {
	if err := c.record("stop %s", dir); err != nil {
		return false, err
	}
	return false, nil
}

func (c *FakeConn) Close() error {
	c.mu.Lock()
	c.calls = append(c.calls, "close")
	c.closed = true
	procs := append([]*openssh.FakeProcess(nil), c.processes...)
	c.mu.Unlock()
	for _, p := range procs {
		p.Exit(errors.New("connection closed"))
	}
	return nil
}

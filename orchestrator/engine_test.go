package orchestrator

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// recorder is a Sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

// of returns the events of kind about host, in order.
func (r *recorder) of(kind EventKind, host string) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	for _, e := range r.events {
		if e.Kind == kind && e.Host == host {
			out = append(out, e)
		}
	}
	return out
}

func (r *recorder) Emit(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []EventKind
	for _, e := range r.events {
		out = append(out, e.Kind)
	}
	return out
}

func (r *recorder) count(k EventKind, host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == k && e.Host == host {
			n++
		}
	}
	return n
}

// fakeNode plays the node binary: it reads the spec, reports the states of
// a download, then seeds until told to stop.
func fakeNode(t *testing.T, specs chan<- *jobspec.Spec, fail string) func(context.Context, openssh.Command, *openssh.FakeProcess) {
	return func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec, emit, spec, ok := startFakeNode(t, p)
		if !ok {
			return
		}
		specs <- spec
		if spec.Handoff != nil {
			emit(jobspec.Event{Kind: jobspec.EventServing, Addr: net.JoinHostPort(spec.PublicIP, "4040")})
		}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateChecking})
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		var lp []jobspec.LayerProgress
		for _, l := range spec.Layers {
			lp = append(lp, jobspec.LayerProgress{Digest: l.Digest, Done: l.Size, Total: l.Size})
		}
		emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: lp, FromPeers: 10, FromSeeder: 20}})
		if fail != "" {
			emit(jobspec.Event{Kind: jobspec.EventError, State: jobspec.StateFailed, Message: fail})
			emit(jobspec.Event{Kind: jobspec.EventExit})
			p.Exit(errors.New("exit status 1"))
			return
		}
		importAndSeed(dec, emit, p, spec.ImageID)
	}
}

// startFakeNode plays the start of a fake node: it reads the spec from
// the process's stdin and returns the decoder of the bastion's control
// lines after it and a function that writes events. When the spec cannot
// be read the test fails and the process has exited (ok false).
func startFakeNode(t *testing.T, p *openssh.FakeProcess) (dec *jobspec.Decoder, emit func(jobspec.Event), spec *jobspec.Spec, ok bool) {
	dec = jobspec.NewDecoder(p.StdinReader())
	enc := jobspec.NewEncoder(p.StdoutWriter())
	spec, err := jobspec.ReadSpec(dec)
	if err != nil {
		t.Errorf("fake node: %v", err)
		p.Exit(err)
		return nil, nil, nil, false
	}
	return dec, func(e jobspec.Event) { e.Time = time.Now(); _ = enc.Encode(e) }, spec, true
}

// importAndSeed plays the end of a fake node that downloaded the image:
// it imports it, reports imageID done, then seeds (seedUntilStopped).
func importAndSeed(dec *jobspec.Decoder, emit func(jobspec.Event), p *openssh.FakeProcess, imageID string) {
	emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateImporting})
	emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDone, ImageID: imageID})
	seedUntilStopped(dec, emit, p)
}

// seedUntilStopped plays a fake node that is done: it waits for the
// bastion's stop (or the end of its control lines) and exits.
func seedUntilStopped(dec *jobspec.Decoder, emit func(jobspec.Event), p *openssh.FakeProcess) {
	for {
		var c jobspec.Control
		if err := dec.Decode(&c); err != nil || c.Kind == jobspec.ControlStop {
			break
		}
	}
	emit(jobspec.Event{Kind: jobspec.EventExit})
	p.Exit(nil)
}

type testLab struct {
	dialer *hostops.FakeDialer
	docker *imagecache.FakeDocker
	deps   Deps
	inv    string
}

func newTestLab(t *testing.T, hosts ...string) *testLab {
	t.Helper()
	dir := t.TempDir()
	var inv strings.Builder
	inv.WriteString("hosts:\n")
	for i, h := range hosts {
		fmt.Fprintf(&inv, "  - name: %s\n    address: 127.0.0.%d\n", h, i+2)
	}
	invPath := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := filepath.Join(dir, "nodes")
	os.Mkdir(nodes, 0o700)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("not really a node binary"))
	zw.Close()
	for _, arch := range []string{"amd64", "arm64"} {
		os.WriteFile(filepath.Join(nodes, nodeassets.FileName(arch)), gz.Bytes(), 0o600)
	}

	l := &testLab{dialer: &hostops.FakeDialer{}, docker: imagecache.NewFakeDocker("lab/app:v1", bytes.Repeat([]byte{1}, 40000), bytes.Repeat([]byte{2}, 70000)), inv: invPath}
	l.deps = Deps{
		Docker:   l.docker,
		Dialer:   func(*inventory.Inventory, Options) (Dialer, error) { return Reach[*hostops.FakeConn](l.dialer), nil },
		Nodes:    nodeassets.Dir(nodes),
		CacheDir: filepath.Join(dir, "cache"),
	}
	return l
}

func (l *testLab) play(host string, node func(context.Context, openssh.Command, *openssh.FakeProcess)) *hostops.FakeConn {
	c := hostops.NewFakeConn(inventory.Host{Name: host})
	c.StartFunc = node
	if l.dialer.Conns == nil {
		l.dialer.Conns = map[string]*hostops.FakeConn{}
	}
	l.dialer.Conns[host] = c
	return c
}

func (l *testLab) run(t *testing.T, ctx context.Context, opts Options) (*Report, *recorder, error) {
	t.Helper()
	eng, err := NewEngine(l.deps)
	if err != nil {
		t.Fatal(err)
	}
	opts.InventoryPath = l.inv
	if opts.Image == "" {
		opts.Image = "lab/app:v1"
	}
	rec := &recorder{}
	rep, err := eng.Run(ctx, opts, rec)
	return rep, rec, err
}

func TestEngine_EveryHostGetsTheImageAndIsTornDown(t *testing.T) {
	l := newTestLab(t, "h1", "h2", "h3")
	specs := make(chan *jobspec.Spec, 3)
	var conns []*hostops.FakeConn
	for _, h := range []string{"h1", "h2", "h3"} {
		conns = append(conns, l.play(h, fakeNode(t, specs, "")))
	}
	rep, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed hosts %v: %+v", f, rep.Hosts)
	}
	for _, h := range rep.Hosts {
		if h.ImageID != l.docker.ID || h.FromPeers != 10 || h.FromSeeder != 20 {
			t.Errorf("host result %+v", h)
		}
	}
	k := rec.kinds()
	if k[0] != EventJobStarted || k[len(k)-1] != EventJobDone {
		t.Fatalf("events start with %s and end with %s", k[0], k[len(k)-1])
	}
	// The bastion's own use: sampled at the job's start and end at least.
	if b := rep.Bastion; b.Hosts != 3 || b.Samples < 2 || b.PeakGoroutines < 1 || b.PeakHeap <= 0 ||
		(haveProc() && (b.PeakRSS <= 0 || b.HWM < b.PeakRSS || b.PeakOpenFiles < 1 || b.PeakThreads < 1)) {
		t.Errorf("bastion use %+v", b)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if n := rec.count(EventTeardown, h); n != 1 {
			t.Errorf("%s: %d teardown events", h, n)
		}
	}
	close(specs)
	withTorrents := 0
	for spec := range specs {
		if spec.ImageID != l.docker.ID || len(spec.Layers) != 2 {
			t.Errorf("spec for %s: image %s, %d layers", spec.Host, spec.ImageID, len(spec.Layers))
		}
		// The torrents follow the spec (ControlTorrents), but for the
		// first host's; every spec names them.
		if len(spec.Layers[0].Torrent) > 0 {
			withTorrents++
		}
		for _, l := range spec.Layers {
			if len(l.InfoHash) != 40 {
				t.Errorf("spec for %s: layer %s infohash %q", spec.Host, l.Digest, l.InfoHash)
			}
		}
		if !strings.Contains(spec.Announce, "192.0.2.1:") || len(spec.Seeders) != 1 || !strings.HasPrefix(spec.Seeders[0], "192.0.2.1:") {
			t.Errorf("spec for %s: announce %s seeders %v; want the bastion as the host sees it", spec.Host, spec.Announce, spec.Seeders)
		}
		// The hosts' consecutive addresses travel as one range.
		if want := []string{"127.0.0.2-127.0.0.4", "192.0.2.1"}; !slices.Equal(spec.AllowedIPs, want) {
			t.Errorf("spec for %s: allowed IPs %q, want the job's hosts and the bastion, %q", spec.Host, spec.AllowedIPs, want)
		}
	}
	if withTorrents != 1 {
		t.Errorf("%d specs carried the torrents, want the first host's only", withTorrents)
	}
	for _, c := range conns {
		if !c.Closed() || len(c.WorkDirs()) != 0 {
			t.Errorf("host left with closed=%v work dirs %v", c.Closed(), c.WorkDirs())
		}
		for _, p := range c.Processes() {
			if !isDone(p) {
				t.Errorf("node still running")
			}
		}
	}
}

func isDone(p *openssh.FakeProcess) bool {
	select {
	case <-p.Done():
		return true
	default:
		return false
	}
}

// allows reports whether the AllowedIPs entries list hold ip.
func allows(t *testing.T, list []string, ip string) bool {
	t.Helper()
	set, err := jobspec.ParseIPSet(list)
	if err != nil {
		t.Fatalf("allowed IPs %q: %v", list, err)
	}
	return set.Contains(netip.MustParseAddr(ip))
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestEngine_OneHostsFailureIsThatHostsAlone(t *testing.T) {
	l := newTestLab(t, "good", "broken", "refused")
	specs := make(chan *jobspec.Spec, 3)
	l.play("good", fakeNode(t, specs, ""))
	l.play("broken", fakeNode(t, specs, "import: disk full"))
	l.dialer.Errs = map[string]error{"refused": fmt.Errorf("%w: 127.0.0.4 offered another key", openssh.ErrHostKeyMismatch)}
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]HostResult{}
	for _, h := range rep.Hosts {
		got[h.Host] = h
	}
	if got["good"].State != HostDone {
		t.Errorf("good: %+v", got["good"])
	}
	if h := got["broken"]; h.State != HostFailed || !strings.Contains(h.Error, "disk full") {
		t.Errorf("broken: %+v", h)
	}
	if h := got["refused"]; h.State != HostFailed || !strings.Contains(h.Error, "host key mismatch") {
		t.Errorf("refused: %+v", h)
	}
	if f := rep.Failed(); len(f) != 2 {
		t.Errorf("failed = %v", f)
	}
}

func TestEngine_BadSelectionTouchesNoHost(t *testing.T) {
	l := newTestLab(t, "h1")
	_, rec, err := l.run(t, context.Background(), Options{Hosts: []string{"h9"}})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	if len(l.dialer.Dialed) != 0 || len(rec.kinds()) != 0 {
		t.Fatalf("dialled %v, emitted %v", l.dialer.Dialed, rec.kinds())
	}
}

func TestEngine_UnknownImageTouchesNoHost(t *testing.T) {
	l := newTestLab(t, "h1")
	_, _, err := l.run(t, context.Background(), Options{Image: "lab/nope:v1"})
	if !errors.Is(err, ErrConfig) || !errors.Is(err, imagecache.ErrNoImage) {
		t.Fatalf("err = %v, want ErrConfig wrapping ErrNoImage", err)
	}
	if len(l.dialer.Dialed) != 0 {
		t.Fatalf("dialled %v", l.dialer.Dialed)
	}
}

func TestEngine_CancelStopsEveryNodeAndRemovesItsDir(t *testing.T) {
	l := newTestLab(t, "h1", "h2")
	started := make(chan struct{}, 2)
	hang := func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec := jobspec.NewDecoder(p.StdinReader())
		if _, err := jobspec.ReadSpec(dec); err != nil {
			p.Exit(err)
			return
		}
		_ = jobspec.NewEncoder(p.StdoutWriter()).Encode(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		started <- struct{}{}
		for {
			var c jobspec.Control
			if err := dec.Decode(&c); err != nil || c.Kind == jobspec.ControlStop {
				break
			}
		}
		p.Exit(nil)
	}
	c1, c2 := l.play("h1", hang), l.play("h2", hang)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; <-started; cancel() }()
	rep, rec, err := l.run(t, ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Cancelled {
		t.Fatal("report not marked cancelled")
	}
	for _, h := range rep.Hosts {
		if h.State != HostCancelled {
			t.Errorf("%s: %s", h.Host, h.State)
		}
	}
	for _, c := range []*hostops.FakeConn{c1, c2} {
		if !c.Closed() || len(c.WorkDirs()) != 0 {
			t.Errorf("closed=%v dirs=%v", c.Closed(), c.WorkDirs())
		}
		for _, p := range c.Processes() {
			if !isDone(p) {
				t.Error("node still running after cancel")
			}
		}
	}
	if rec.count(EventTeardown, "h1") != 1 || rec.count(EventTeardown, "") != 1 {
		t.Errorf("teardown events missing: %v", rec.kinds())
	}
}

func TestEngine_NodeThatDiesEarlyFailsWithItsOutput(t *testing.T) {
	l := newTestLab(t, "h1")
	l.play("h1", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		_, _ = io.WriteString(p.StderrWriter(), "fatal: cannot open /var/run/docker.sock\n")
		time.Sleep(50 * time.Millisecond)
		p.Exit(errors.New("exit status 2"))
	})
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if h := rep.Hosts[0]; h.State != HostFailed || !strings.Contains(h.Error, "docker.sock") {
		t.Fatalf("%+v", h)
	}
}

func TestEngine_HostThatStopsReceivingFailsAfterTheStallTimeout(t *testing.T) {
	l := newTestLab(t, "stuck", "fine")
	specs := make(chan *jobspec.Spec, 2)
	l.play("fine", fakeNode(t, specs, ""))
	l.play("stuck", func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec := jobspec.NewDecoder(p.StdinReader())
		if _, err := jobspec.ReadSpec(dec); err != nil {
			p.Exit(err)
			return
		}
		_ = jobspec.NewEncoder(p.StdoutWriter()).Encode(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		for {
			var c jobspec.Control
			if err := dec.Decode(&c); err != nil || c.Kind == jobspec.ControlStop {
				break
			}
		}
		p.Exit(nil)
	})
	rep, _, err := l.run(t, context.Background(), Options{StallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res := map[string]HostResult{}
	for _, h := range rep.Hosts {
		res[h.Host] = h
	}
	if h := res["stuck"]; h.State != HostFailed || !strings.Contains(h.Error, "no data for 300ms") {
		t.Errorf("stuck: %+v", h)
	}
	if res["fine"].State != HostDone {
		t.Errorf("fine: %+v", res["fine"])
	}
}

// registryNode plays a node in registry mode: it pulls image pulled and
// fails, as the real node's check does, when the spec names another ID.
func registryNode(pulled string, specs chan<- *jobspec.Spec) func(context.Context, openssh.Command, *openssh.FakeProcess) {
	return func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec := jobspec.NewDecoder(p.StdinReader())
		enc := jobspec.NewEncoder(p.StdoutWriter())
		spec, err := jobspec.ReadSpec(dec)
		if err != nil {
			p.Exit(err)
			return
		}
		if specs != nil {
			specs <- spec
		}
		emit := func(e jobspec.Event) { e.Time = time.Now(); _ = enc.Encode(e) }
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		if spec.ImageID != "" && spec.ImageID != pulled {
			emit(jobspec.Event{Kind: jobspec.EventError, State: jobspec.StateFailed, Message: fmt.Sprintf("check image: %s has ID %s, want %s: image in the daemon does not match the job", spec.Image, pulled, spec.ImageID)})
			emit(jobspec.Event{Kind: jobspec.EventExit})
			p.Exit(errors.New("exit status 1"))
			return
		}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDone, ImageID: pulled})
		seedUntilStopped(dec, emit, p)
	}
}

func TestEngine_RegistryModeChecksTheBastionsImageOrSaysItDidNot(t *testing.T) {
	other := "sha256:" + strings.Repeat("e", 64)
	t.Run("registry serves the bastion's image", func(t *testing.T) {
		l := newTestLab(t, "h1", "h2")
		l.play("h1", registryNode(l.docker.ID, nil))
		arm := l.play("h2", registryNode(other, nil)) // another CPU, another image
		arm.Facts.Arch, arm.Facts.Machine = "arm64", "aarch64"
		rep, _, err := l.run(t, context.Background(), Options{Mode: ModeRegistry})
		if err != nil {
			t.Fatal(err)
		}
		res := map[string]HostResult{}
		for _, h := range rep.Hosts {
			res[h.Host] = h
		}
		if h := res["h1"]; h.State != HostDone || h.Unverified || h.ImageID != l.docker.ID {
			t.Errorf("h1: %+v; want done, verified", h)
		}
		if h := res["h2"]; h.State != HostDone || !h.Unverified {
			t.Errorf("h2 (arm64): %+v; want done, unverified", h)
		}
		if !strings.Contains(rep.Unverified, "host h2") || !strings.Contains(rep.Unverified, "linux/amd64") {
			t.Errorf("report says %q; want it to name h2 and the bastion's platform", rep.Unverified)
		}
		if rep.ImageID != l.docker.ID {
			t.Errorf("report image ID %q, want the bastion's", rep.ImageID)
		}
	})
	t.Run("registry serves another image", func(t *testing.T) {
		l := newTestLab(t, "h1")
		l.play("h1", registryNode(other, nil))
		rep, _, err := l.run(t, context.Background(), Options{Mode: ModeRegistry})
		if err != nil {
			t.Fatal(err)
		}
		if h := rep.Hosts[0]; h.State != HostFailed || !strings.Contains(h.Error, "does not match") {
			t.Errorf("h1: %+v; want failed with a mismatch", h)
		}
	})
	t.Run("bastion without the image", func(t *testing.T) {
		l := newTestLab(t, "h1")
		l.docker.Remove()
		l.play("h1", registryNode(other, nil))
		rep, rec, err := l.run(t, context.Background(), Options{Mode: ModeRegistry})
		if err != nil {
			t.Fatal(err)
		}
		if h := rep.Hosts[0]; h.State != HostDone || !h.Unverified || h.ImageID != other {
			t.Errorf("h1: %+v; want done, unverified, with the registry's image", h)
		}
		if !strings.Contains(rep.Unverified, "no copy of lab/app:v1") {
			t.Errorf("report says %q; want it to say the bastion has no copy", rep.Unverified)
		}
		if ev := rec.events[len(rec.events)-1]; ev.Report == nil || ev.Report.Unverified == "" {
			t.Error("the job_done event's report does not say the result is unverified")
		}
	})
}

func TestEngine_IgnoredInventorySettingsReachJobAndPlan(t *testing.T) {
	l := newTestLab(t, "h1")
	ini := filepath.Join(filepath.Dir(l.inv), "hosts.ini")
	if err := os.WriteFile(ini, []byte("[web]\nh1 ansible_host=127.0.0.2 ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='-o StrictHostKeyChecking=no'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.inv = ini
	l.play("h1", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	_, rec, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	info := rec.events[0].Job
	got := strings.Join(info.Ignored, "\n")
	for _, w := range []string{"ansible_python_interpreter: not used by layercast (h1)", "-o StrictHostKeyChecking=no: not used"} {
		if !strings.Contains(got, w) {
			t.Errorf("job_started lists as ignored:\n%s\nwant %q", got, w)
		}
	}
	eng, _ := NewEngine(l.deps)
	p, err := eng.Plan(context.Background(), Options{InventoryPath: ini, Image: "lab/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Ignored) != len(info.Ignored) {
		t.Errorf("plan lists %v as ignored, the job %v", p.Ignored, info.Ignored)
	}
}

func TestEngine_RegistryCredentialsForALoopbackRegistryStayOnTheBastion(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	basic := "Y2k6czNjcmV0" // ci:s3cret
	cfg := `{"auths": {"localhost:5000": {"auth": "` + basic + `"}, "127.0.0.1:5001": {"auth": "` + basic + `"}, "reg.example:5000": {"auth": "` + basic + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for image, wantAuth := range map[string]bool{"localhost:5000/app:v1": false, "127.0.0.1:5001/app:v1": false, "reg.example:5000/app:v1": true} {
		l := newTestLab(t, "h1")
		specs := make(chan *jobspec.Spec, 1)
		l.play("h1", registryNode("sha256:"+strings.Repeat("1", 64), specs))
		if _, _, err := l.run(t, context.Background(), Options{Mode: ModeRegistry, Image: image}); err != nil {
			t.Fatal(err)
		}
		spec := <-specs
		if got := spec.RegistryAuth != ""; got != wantAuth {
			t.Errorf("%s: credentials sent: %v, want %v", image, got, wantAuth)
		}
	}
}

func TestEngine_BastionAddrNameIsResolvedForTheAllowList(t *testing.T) {
	l := newTestLab(t, "h1")
	specs := make(chan *jobspec.Spec, 1)
	l.play("h1", fakeNode(t, specs, ""))
	if _, _, err := l.run(t, context.Background(), Options{BastionAddr: "localhost"}); err != nil {
		t.Fatal(err)
	}
	spec := <-specs
	if !strings.Contains(spec.Announce, "//localhost:") || len(spec.Seeders) == 0 || !strings.HasPrefix(spec.Seeders[0], "127.0.0.1:") || !allows(t, spec.AllowedIPs, "127.0.0.1") || contains(spec.AllowedIPs, "localhost") {
		t.Errorf("announce %s, seeders %v, allowed %v; want the name for the tracker, its address for the seeder and the allow list", spec.Announce, spec.Seeders, spec.AllowedIPs)
	}
}

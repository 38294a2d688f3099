// Package bench reproduces the DID experiment on the testbed: it runs
// layercast in registry mode (every host pulls at once, the article's
// `docker pull` baseline) and in P2P mode over a grid of image sizes and
// cluster sizes, on one lab whose links are all shaped to one rate, and
// writes a CSV, SVG figures and markdown tables. A run can start with every
// host's node cache seeded as a previous job leaves it (Config.SeedNodeCache,
// seed.go) and can be split into jobs run at once over disjoint groups of
// its hosts (Config.Split, split.go).
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/layercast/layercast/internal/byterate"
	"github.com/layercast/layercast/testbed"
)

// ErrInvalidConfig reports a Config Run cannot use.
var ErrInvalidConfig = errors.New("invalid bench config")

// Config is one bench.
type Config struct {
	// Bin is the layercast binary (built by make, node binaries embedded).
	Bin string
	// Sizes are image sizes in bytes; Hosts cluster sizes.
	Sizes []int64
	Hosts []int
	// Modes to run, ModeP2P and/or ModeRegistry. Default both.
	Modes []string
	// Rate of every link, tc notation.
	Rate string
	// CongestionControl is the lab machines' TCP congestion control.
	// Default testbed.DefaultCongestionControl.
	CongestionControl string
	// Layers per image. Default 5.
	Layers int
	// MaxRate is layercast's --max-rate for every run (the bastion's
	// upload cap, seeder and node binary uploads); "" for none.
	MaxRate string
	// ConnectTimeout is layercast's --connect-timeout for every run; 0
	// keeps layercast's default.
	ConnectTimeout time.Duration
	// Out receives results.csv, results.md, the figures and events/.
	Out string
	// LabName names the lab the bench brings up. Default "bench".
	LabName string
	// NoSingle leaves out the single-host P2P run of every size (the
	// time(1) of the scaling column).
	NoSingle bool
	// WarmNodeCache keeps the hosts' node caches between runs, so every
	// run after the first finds the node binary on the hosts (a fleet's
	// second job). By default every run starts with empty caches, as a
	// fleet's first job: the node binary crosses the bastion's link.
	WarmNodeCache bool
	// SeedNodeCache places, before every run, the node binary in every
	// host's node cache as a job that brought it there leaves it (a
	// fleet's second job, without running the first), and checks that
	// every host of the run took it from there. It excludes
	// WarmNodeCache.
	SeedNodeCache bool
	// Split runs every run of more than one host as Split layercast jobs
	// at once from the bastion, over disjoint equal groups of its hosts
	// in order (what an operator does beyond one bastion process: a CI
	// matrix over inventory groups). Every cluster size must be a
	// multiple of it. Default 1; the single-host runs are never split.
	Split int
	// Perf samples the whole machine with `perf record` during every run
	// and writes, per process kind, how its CPU divides between its own
	// code, the kernel on its behalf and the interrupts it happened to run
	// (perf/RUN.md under Out). Needs perf.
	Perf bool
	// RunTimeout bounds one run. Default: 3× the registry's ideal time of
	// the largest point plus 5 minutes.
	RunTimeout time.Duration
	// Deadline, when set, stops starting new runs after it; what finished
	// is written.
	Deadline time.Time
	// DiskMargin is the free space left untouched; a run that would need
	// more is skipped. Default 5 GB.
	DiskMargin int64
	// Ephemeral ties the lab to this process (see testbed.Config), for
	// tests: a test binary killed mid-bench leaves no lab behind for long.
	Ephemeral bool
	Log       *slog.Logger

	// afterRun, when set (by tests), looks at the lab after each run that
	// finished, before the next run cleans it.
	afterRun func(ctx context.Context, lab *testbed.Lab, rows []Result)
}

func (c Config) withDefaults() (Config, error) {
	if c.Bin == "" {
		return c, fmt.Errorf("%w: no layercast binary", ErrInvalidConfig)
	}
	if abs, err := filepath.Abs(c.Bin); err == nil {
		c.Bin = abs
	}
	if _, err := os.Stat(c.Bin); err != nil {
		return c, fmt.Errorf("%w: layercast binary: %w", ErrInvalidConfig, err)
	}
	if len(c.Sizes) == 0 || len(c.Hosts) == 0 {
		return c, fmt.Errorf("%w: no sizes or no cluster sizes", ErrInvalidConfig)
	}
	for _, n := range c.Hosts {
		if n < 1 || n > testbed.MaxHosts {
			return c, fmt.Errorf("%w: cluster size %d", ErrInvalidConfig, n)
		}
	}
	for _, s := range c.Sizes {
		if s < MB {
			return c, fmt.Errorf("%w: image size %d below 1 MB", ErrInvalidConfig, s)
		}
	}
	if len(c.Modes) == 0 {
		c.Modes = []string{ModeP2P, ModeRegistry}
	}
	for _, m := range c.Modes {
		if m != ModeP2P && m != ModeRegistry {
			return c, fmt.Errorf("%w: mode %q: want p2p or registry", ErrInvalidConfig, m)
		}
	}
	if c.Split <= 0 {
		c.Split = 1
	}
	if c.Perf {
		if _, err := exec.LookPath("perf"); err != nil {
			return c, fmt.Errorf("%w: --perf needs perf on PATH (Debian: apt-get install linux-perf): %w", ErrInvalidConfig, err)
		}
	}
	for _, n := range c.Hosts {
		if n > 1 && n%c.Split != 0 {
			return c, fmt.Errorf("%w: cluster size %d does not split into %d equal groups", ErrInvalidConfig, n, c.Split)
		}
	}
	if c.SeedNodeCache && c.WarmNodeCache {
		return c, fmt.Errorf("%w: seeding the node caches and keeping them warm exclude each other", ErrInvalidConfig)
	}
	if c.Rate == "" {
		c.Rate = "100mbit"
	}
	if _, err := testbed.ParseRate(c.Rate); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if _, err := byterate.Parse(c.MaxRate); err != nil {
		return c, fmt.Errorf("%w: max rate: %w", ErrInvalidConfig, err)
	}
	if c.Layers <= 0 {
		c.Layers = 5
	}
	if c.Out == "" {
		c.Out = "bench-out"
	}
	if c.LabName == "" {
		c.LabName = "bench"
	}
	if c.DiskMargin <= 0 {
		c.DiskMargin = 5e9
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Sizes, c.Hosts = slices.Clone(c.Sizes), slices.Clone(c.Hosts)
	slices.Sort(c.Sizes)
	slices.Sort(c.Hosts)
	c.Sizes, c.Hosts = slices.Compact(c.Sizes), slices.Compact(c.Hosts)
	rate, _ := testbed.ParseRate(c.Rate)
	if c.RunTimeout <= 0 {
		worst := float64(c.Sizes[len(c.Sizes)-1]*8) * float64(c.Hosts[len(c.Hosts)-1]) / float64(rate)
		c.RunTimeout = time.Duration(3*worst)*time.Second + 5*time.Minute
	}
	return c, nil
}

// point is one planned run.
type point struct {
	mode  string
	hosts int
	size  int64
	split int // jobs run at once over the hosts
}

// plan lists the runs in order: by size, then cluster size, then mode, so
// that a bench stopped early has whole small sizes.
func (c Config) plan() []point {
	var out []point
	for _, s := range c.Sizes {
		if !c.NoSingle && slices.Contains(c.Modes, ModeP2P) && !slices.Contains(c.Hosts, 1) {
			out = append(out, point{ModeP2P, 1, s, 1})
		}
		for _, n := range c.Hosts {
			split := c.Split
			if n == 1 {
				split = 1
			}
			for _, m := range c.Modes {
				out = append(out, point{m, n, s, split})
			}
		}
	}
	return out
}

// Run brings up a lab with the largest cluster size and, when registry
// mode is measured, a registry; runs every point of the grid on it and
// takes it down. Results are written to
// cfg.Out after every run, so an interrupted bench keeps what finished.
func Run(ctx context.Context, cfg Config) (Results, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, "events"), 0o755); err != nil {
		return nil, fmt.Errorf("create output dir: %w", err)
	}
	rate, _ := testbed.ParseRate(cfg.Rate)
	b := &bencher{cfg: cfg, rate: rate}
	if cfg.SeedNodeCache {
		// Before the lab: a layercast carrying another node binary than
		// this program fails here, not after bringing up 200 hosts.
		if b.seed, err = newNodeSeed(ctx, cfg.Bin); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	lab, err := testbed.Up(ctx, testbed.Config{
		Name: cfg.LabName, Hosts: cfg.Hosts[len(cfg.Hosts)-1], Rate: cfg.Rate,
		CongestionControl: cfg.CongestionControl,
		// P2P alone needs no registry: the image then goes from the
		// bastion's daemon only, and the bench does not wait for a push
		// through a slow link.
		Registry:  slices.Contains(cfg.Modes, ModeRegistry),
		Ephemeral: cfg.Ephemeral,
	})
	if err != nil {
		return nil, fmt.Errorf("bring up the bench lab: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if derr := lab.Down(dctx); derr != nil {
			cfg.Log.Error("take the bench lab down", "err", derr)
		}
	}()
	cfg.Log.Info("bench lab up", "hosts", len(lab.Hosts()), "rate", cfg.Rate, "elapsed", time.Since(start).Round(time.Second))

	b.lab, b.cache = lab, filepath.Join(lab.Dir(), "cache")
	var results Results
	var errs []error
	plan := cfg.plan()
	images := map[int64]string{}
	for i, p := range plan {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if !cfg.Deadline.IsZero() && time.Now().After(cfg.Deadline) {
			cfg.Log.Warn("deadline reached: the remaining runs are skipped", "done", i, "planned", len(plan))
			break
		}
		ref, ok := images[p.size]
		if !ok {
			b.dropImages(ctx, images)
			if ref, err = b.makeImage(ctx, p.size); err != nil {
				errs = append(errs, err)
				break
			}
			images = map[int64]string{p.size: ref}
		}
		if need := b.diskNeed(p); !b.diskFits(need) {
			cfg.Log.Warn("not enough free disk: run skipped", "mode", p.mode, "hosts", p.hosts, "size_mb", p.size/MB, "need_gb", need/1e9)
			continue
		}
		rows, err := b.run(ctx, p, ref)
		if err != nil {
			cfg.Log.Error("run failed", "mode", p.mode, "hosts", p.hosts, "size_mb", p.size/MB, "err", err)
			errs = append(errs, fmt.Errorf("%s, %d hosts, %d MB: %w", p.mode, p.hosts, p.size/MB, err))
			continue
		}
		results = append(results, rows...)
		if cfg.afterRun != nil {
			cfg.afterRun(ctx, lab, rows)
		}
		res := rows[0]
		cfg.Log.Info("run done", "n", fmt.Sprintf("%d/%d", i+1, len(plan)), "mode", p.mode, "hosts", p.hosts, "size_mb", p.size/MB, "jobs", p.split,
			"time", res.Propagation.Round(100*time.Millisecond), "cpu", fmt.Sprintf("%.0f%%", 100*res.CPU), "failed", res.Failed)
		if cfg.SeedNodeCache {
			// The run is kept: its times are right, only not warm ones.
			if err := checkSeeded(res); err != nil {
				cfg.Log.Error("seeded node cache missed", "mode", p.mode, "hosts", p.hosts, "size_mb", p.size/MB, "err", err)
				errs = append(errs, fmt.Errorf("%s, %d hosts, %d MB: %w", p.mode, p.hosts, p.size/MB, err))
			}
		}
		if err := WriteAll(cfg.Out, results, Setup{Rate: cfg.Rate, Layers: cfg.Layers, CongestionControl: lab.CongestionControl(), MaxRate: cfg.MaxRate, ConnectTimeout: cfg.ConnectTimeout}); err != nil {
			errs = append(errs, err)
			break
		}
	}
	return results, errors.Join(errs...)
}

type bencher struct {
	cfg   Config
	lab   *testbed.Lab
	rate  int64
	cache string
	seed  *nodeSeed // with Config.SeedNodeCache
}

func imageTag(size int64) string { return fmt.Sprintf("bench/img-%dmb:v1", size/MB) }

// makeImage generates the image of one size, loads it into the bastion and
// pushes it to the registry when the lab has one; both modes then
// distribute the registry reference, which the bastion's daemon has too.
func (b *bencher) makeImage(ctx context.Context, size int64) (string, error) {
	start := time.Now()
	img, err := b.lab.MakeImage(ctx, testbed.ImageSpec{Tag: imageTag(size), Size: size, Layers: b.cfg.Layers})
	if err != nil {
		return "", fmt.Errorf("make %d MB image: %w", size/MB, err)
	}
	// The archive is only needed to load the bastion; free its disk.
	_ = os.Remove(img.Path)
	ref := img.RegistryRef
	if ref == "" {
		ref = img.Tag
	}
	b.cfg.Log.Info("image ready", "ref", ref, "size_mb", size/MB, "elapsed", time.Since(start).Round(time.Second))
	return ref, nil
}

// dropImages removes earlier sizes' images from the bastion and the layer
// cache, so the disk holds one size at a time (the registry keeps its
// blobs: it cannot delete them without garbage collection).
func (b *bencher) dropImages(ctx context.Context, images map[int64]string) {
	for size, ref := range images {
		_, _ = b.lab.Exec(ctx, "bastion", "docker", "image", "rm", "-f", ref, imageTag(size))
	}
	if len(images) > 0 {
		_ = os.RemoveAll(b.cache)
	}
}

// diskNeed is a bound of the disk one run fills: per host the layer files
// (P2P) and the daemon's copy, with room for the registry's download.
func (b *bencher) diskNeed(p point) int64 {
	return int64(p.hosts) * p.size * 2
}

func (b *bencher) diskFits(need int64) bool {
	var st syscall.Statfs_t
	if err := syscall.Statfs(b.lab.Dir(), &st); err != nil {
		return true
	}
	free := int64(st.Bavail) * st.Bsize
	return free-need > b.cfg.DiskMargin
}

// clean empties every host's daemon of images, so each run starts from
// clean daemons, and unless the node caches stay warm or are seeded,
// empties the node cache of every account on the host; seeded, every
// host's cache then holds the node binary alone (seedNodeCaches).
func (b *bencher) clean(ctx context.Context) error {
	if b.seed != nil {
		if err := b.seedNodeCaches(ctx); err != nil {
			return err
		}
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range b.lab.Hosts() {
		g.Go(func() error {
			if !b.cfg.WarmNodeCache && b.seed == nil {
				if _, err := b.lab.Exec(ctx, h, "sh", "-c", "rm -rf /root/.cache/layercast /home/*/.cache/layercast"); err != nil {
					return fmt.Errorf("empty the node cache of %s: %w", h, err)
				}
			}
			if _, err := b.lab.Exec(ctx, h, "docker", "image", "prune", "-af"); err != nil {
				return fmt.Errorf("clean %s: %w", h, err)
			}
			out, err := b.lab.Exec(ctx, h, "docker", "images", "-aq")
			if err != nil {
				return fmt.Errorf("clean %s: %w", h, err)
			}
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				if _, err := b.lab.Exec(ctx, h, append([]string{"docker", "image", "rm", "-f"}, ids...)...); err != nil {
					return fmt.Errorf("clean %s: %w", h, err)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// runName names a run's files in the events directory:
// p2p-010h-0250mb.jsonl and .log; a run split into jobs has one pair per
// job, p2p-010h-0250mb-j1.jsonl and so on (jobName).
func runName(mode string, hosts int, size int64) string {
	return fmt.Sprintf("%s-%03dh-%04dmb", mode, hosts, size/MB)
}

// job is one layercast process of a run.
type job struct {
	k      int // 1.., 0 when the run is one job
	name   string
	hosts  []string
	cmd    *exec.Cmd
	out    io.Reader
	evlog  *os.File
	stderr bytes.Buffer
	tl     *timeline
	rerr   error // reading its events
	werr   error // its exit
}

// logPath is where the job's layercast writes its log (--log-file).
func (j *job) logPath(out string) string {
	return filepath.Join(out, "events", j.name+".log")
}

// logTail is the end of the job's log: with --log-file, the hosts'
// errors are there, not on stderr.
func (j *job) logTail(out string) string {
	b, err := os.ReadFile(j.logPath(out))
	if err != nil {
		return err.Error()
	}
	return tail(string(b))
}

// startJobs prepares one layercast command per group of hosts, each with
// its event log; close closes the event logs.
func (b *bencher) startJobs(ctx context.Context, p point, ref string, groups [][]string) (jobs []*job, close func(), err error) {
	name := runName(p.mode, p.hosts, p.size)
	close = func() {
		for _, j := range jobs {
			j.evlog.Close()
		}
	}
	for k, hosts := range groups {
		j := &job{name: name, hosts: hosts}
		if len(groups) > 1 {
			j.k, j.name = k+1, jobName(name, k+1)
		}
		if j.evlog, err = os.Create(filepath.Join(b.cfg.Out, "events", j.name+".jsonl")); err != nil {
			close()
			return nil, nil, fmt.Errorf("create event log: %w", err)
		}
		jobs = append(jobs, j)
		// layercast appends to its log: a rerun into the same directory
		// starts a new one.
		if err = os.Remove(j.logPath(b.cfg.Out)); err != nil && !errors.Is(err, os.ErrNotExist) {
			close()
			return nil, nil, fmt.Errorf("remove the last run's log: %w", err)
		}
		if j.cmd, err = b.lab.Command(ctx, "bastion", runArgs(b.cfg.Bin, p.mode, b.lab.InventoryPath(), b.cache, ref, hosts, runFlags{maxRate: b.cfg.MaxRate, connectTimeout: b.cfg.ConnectTimeout, logFile: j.logPath(b.cfg.Out)})...); err != nil {
			close()
			return nil, nil, err
		}
		j.cmd.Stderr = &j.stderr
		if j.out, err = j.cmd.StdoutPipe(); err != nil {
			close()
			return nil, nil, fmt.Errorf("start layercast: %w", err)
		}
	}
	return jobs, close, nil
}

// run runs one point from clean daemons and measures it. It returns the
// whole run's row first, then, when the run was split, one row per job.
func (b *bencher) run(ctx context.Context, p point, ref string) ([]Result, error) {
	if err := b.clean(ctx); err != nil {
		return nil, err
	}
	bastion, err := b.lab.Machine("bastion")
	if err != nil {
		return nil, err
	}
	// The registry's link counter reads nothing when the lab has none.
	rLink := linkCounter{}
	registry, err := b.lab.Machine("registry")
	if err == nil {
		rLink = newLinkCounter(registry.Veth)
	} else if p.mode == ModeRegistry {
		return nil, err
	}
	hosts := b.lab.Hosts()[:p.hosts]
	groups, err := splitHosts(hosts, max(p.split, 1))
	if err != nil {
		return nil, err
	}
	bLink := newLinkCounter(bastion.Veth)
	b0, err := bLink.read()
	if err != nil {
		return nil, err
	}
	r0, err := rLink.read()
	if err != nil {
		return nil, err
	}

	flows := &bastionFlows{exec: b.lab.Exec, ifb: bastion.Ifb}
	if err := flows.add(ctx); err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := flows.remove(rctx); err != nil {
			b.cfg.Log.Warn("remove the bastion's byte counters", "err", err)
		}
	}()
	f0, err := flows.read(ctx)
	if err != nil {
		return nil, err
	}
	machines := []machineNetns{{name: "bastion", role: string(testbed.RoleBastion), netnsPath: bastion.NetnsPath()}}
	if p.mode == ModeRegistry {
		machines = append(machines, machineNetns{name: "registry", role: string(testbed.RoleRegistry), netnsPath: registry.NetnsPath()})
	}
	for _, h := range hosts {
		m, err := b.lab.Machine(h)
		if err != nil {
			return nil, err
		}
		machines = append(machines, machineNetns{name: h, role: string(testbed.RoleHost), netnsPath: m.NetnsPath()})
	}

	ctx, cancel := context.WithTimeout(ctx, b.cfg.RunTimeout)
	defer cancel()
	jobs, closeLogs, err := b.startJobs(ctx, p, ref, groups)
	if err != nil {
		return nil, err
	}
	defer closeLogs()
	cpu, err := startCPU(ctx)
	if err != nil {
		return nil, err
	}
	procs, err := startProcMeter(ctx, machines, procScanEvery(p.hosts))
	if err != nil {
		_, _, _ = cpu.finish()
		return nil, err
	}
	var rec *perfRecorder
	if b.cfg.Perf {
		dir := filepath.Join(b.cfg.Out, "perf")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("perf: %w", err)
		}
		if rec, err = startPerf(ctx, filepath.Join(dir, runName(p.mode, p.hosts, p.size)+".data")); err != nil {
			_, _, _ = cpu.finish()
			_, _, _ = procs.finish()
			return nil, err
		}
	}
	// Every job starts before any is read: the jobs run at once.
	var started []*job
	for _, j := range jobs {
		if err := j.cmd.Start(); err != nil {
			cancel() // ends the jobs already started
			for _, s := range started {
				_, _ = io.Copy(io.Discard, s.out)
				_ = s.cmd.Wait()
			}
			_, _, _ = cpu.finish()
			_, _, _ = procs.finish()
			return nil, fmt.Errorf("start layercast: %w", err)
		}
		started = append(started, j)
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		// A job that ends before it serves has no ports to count.
		watchCtx, stopWatching := context.WithCancel(ctx)
		wg.Go(func() {
			j.tl, j.rerr = readEvents(j.out, j.evlog)
			j.werr = j.cmd.Wait()
			stopWatching()
		})
		wg.Go(func() {
			if err := flows.watchJob(watchCtx, j.logPath(b.cfg.Out)); err != nil {
				b.cfg.Log.Warn("count the tracker's and seeder's bytes", "run", j.name, "err", err)
			}
		})
	}
	wg.Wait()
	// layercast's log (the seeder's rescues, hosts' errors) is beside the
	// run's events (--log-file), for every run: a slow run is read from it
	// as much as a failed one. What it wrote on stderr goes beside it.
	for _, j := range jobs {
		if j.stderr.Len() == 0 {
			continue
		}
		if err := os.WriteFile(filepath.Join(b.cfg.Out, "events", j.name+".stderr"), j.stderr.Bytes(), 0o644); err != nil {
			b.cfg.Log.Warn("keep layercast's stderr", "run", j.name, "err", err)
		}
	}
	avg, peak, cerr := cpu.finish()
	byKind, nodeSamples, perr := procs.finish()
	if rec != nil {
		// After the meters: reading the samples takes CPU of its own.
		b.writePerf(ctx, rec, runName(p.mode, p.hosts, p.size))
	}
	b1, berr := bLink.read()
	r1, gerr := rLink.read()
	f1, ferr := flows.read(ctx)
	for _, j := range jobs {
		if j.rerr != nil {
			return nil, fmt.Errorf("layercast %s: %w (exit: %v); stderr: %s; log: %s", j.name, j.rerr, j.werr, tail(j.stderr.String()), j.logTail(b.cfg.Out))
		}
	}
	if err := errors.Join(cerr, perr, berr, gerr, ferr); err != nil {
		return nil, err
	}
	var rows []Result
	var tls []*timeline
	for _, j := range jobs {
		r := Result{Mode: p.mode, Hosts: len(j.hosts), Size: p.size, RateBits: b.rate, Split: len(jobs), Job: j.k}
		j.tl.fill(&r)
		// The bastion's layercast is this process's child: its exit
		// status has its exact CPU time, the last fraction of a second
		// included.
		if ps := j.cmd.ProcessState; ps != nil {
			r.ProcCPU.Layercast = (ps.UserTime() + ps.SystemTime()).Seconds()
		}
		if r.Failed > 0 {
			b.cfg.Log.Warn("hosts failed", "run", j.name, "failed", r.Failed, "exit", j.werr, "log", j.logTail(b.cfg.Out))
		}
		rows, tls = append(rows, r), append(tls, j.tl)
	}
	res := rows[0]
	if len(jobs) > 1 {
		res = combine(rows, tls)
	} else {
		rows = nil
	}
	res.BastionLink, res.RegistryLink = b1-b0, r1-r0
	res.Flows = f1.sub(f0)
	res.CPU, res.CPUPeak = avg, peak
	res.Machine = MachineCPU{Busy: cpu.busy, IRQ: cpu.irq, Steal: cpu.steal}
	layercast := res.ProcCPU.Layercast
	res.ProcCPU = procCPUFrom(byKind)
	res.ProcCPU.Layercast = layercast
	res.NodeIdle, res.NodeIdleSecs = idleNodeCPU(nodeSamples, mergeTimelines(tls).doneTimes())
	b.cfg.Log.Info("cpu by process", "run", runName(p.mode, p.hosts, p.size), "node", res.ProcCPU.Node, "docker", res.ProcCPU.Docker,
		"layercast", res.ProcCPU.Layercast, "sshd", res.ProcCPU.SSHD, "other", res.ProcCPU.Other, "kernel", res.ProcCPU.Kernel,
		"machine", res.Machine.Busy, "irq", res.Machine.IRQ, "steal", res.Machine.Steal, "outside", res.Machine.Outside(res.ProcCPU), "other_top", procs.others(6))
	if over := res.ProcCPU.excessOver(res.Machine); over > 0 {
		b.cfg.Log.Warn("the CPU by process adds up to more than the machine used: some process was counted twice, so the per-kind figures are wrong",
			"run", runName(p.mode, p.hosts, p.size), "by_process", res.ProcCPU.total(), "machine", res.Machine.Busy, "steal", res.Machine.Steal, "over", over)
	}
	return append([]Result{res}, rows...), nil
}

// writePerf ends a run's perf recording and writes its split beside the
// run's other outputs; a failure is logged, the run's figures stand.
func (b *bencher) writePerf(ctx context.Context, rec *perfRecorder, run string) {
	split, err := rec.finish(ctx)
	if err != nil {
		b.cfg.Log.Warn("perf split", "run", run, "err", err)
		return
	}
	var md bytes.Buffer
	fmt.Fprintf(&md, "# Where each kind's CPU went, %s\n\n", run)
	split.table(&md)
	if err := os.WriteFile(filepath.Join(b.cfg.Out, "perf", run+".md"), md.Bytes(), 0o644); err != nil {
		b.cfg.Log.Warn("perf split", "run", run, "err", err)
	}
	b.cfg.Log.Info("perf split", "run", run, "table", md.String())
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

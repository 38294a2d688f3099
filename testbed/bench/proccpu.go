package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The process kinds whose CPU a run records. Each lab machine is a network
// namespace; a process belongs to the lab when it runs in one of them.
const (
	KindNode      = "node"      // layercast-node on the hosts
	KindDocker    = "docker"    // dockerd, docker-untar, containerd(-shim), runc on the hosts
	KindLayercast = "layercast" // the operator's layercast on the bastion
	KindSSHD      = "sshd"      // sshd on the hosts
	KindRegistry  = "registry"  // docker-registry
	KindOther     = "other"     // anything else in the lab (shells, docker CLI, the bastion's daemon)
	// KindKernel is the machine's kernel threads (kworker, ksoftirqd,
	// kswapd, …): not the lab's alone, but the lab is what keeps them busy
	// (writeback of the hosts' layer files and images, softirqs that found
	// no process to run in).
	KindKernel = "kernel"
)

// roleKernel is the role of kernel threads, which run in no lab machine.
const roleKernel = "kernel"

// isKernelThread tells a kernel thread by its parent: kthreadd (pid 2)
// starts them all.
func isKernelThread(st procStat) bool { return st.pid == 2 || st.ppid == 2 }

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on Linux
// for every architecture the lab runs on).
const clockTicks = 100

// procStat is what a run needs of one /proc/PID/stat line.
type procStat struct {
	pid, ppid int
	comm      string
	state     byte
	// own is utime+stime; children is cutime+cstime, the CPU of children
	// the process has waited for (their own children included).
	own, children uint64
	start         uint64 // start time, clock ticks after boot
}

// parseProcStat parses one /proc/PID/stat text. The command name (field 2)
// is in parentheses and may hold spaces and parentheses itself, so fields
// are counted from the last ')'.
func parseProcStat(s string) (procStat, error) {
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("parse proc stat %.40q: no command name", s)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return procStat{}, fmt.Errorf("parse proc stat: pid: %w", err)
	}
	f := strings.Fields(s[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse proc stat of %d: %d fields", pid, len(f)+2)
	}
	var v [5]uint64
	for i, n := range []int{14, 15, 16, 17, 22} {
		if v[i], err = strconv.ParseUint(f[n-3], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("parse proc stat of %d: field %d: %w", pid, n, err)
		}
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("parse proc stat of %d: ppid: %w", pid, err)
	}
	return procStat{
		pid: pid, ppid: ppid, comm: s[open+1 : end], state: f[0][0],
		own: v[0] + v[1], children: v[2] + v[3], start: v[4],
	}, nil
}

// procKey names a process across pid reuse.
type procKey struct {
	pid   int
	start uint64
}

// procTrack is one lab process seen during a run.
type procTrack struct {
	kind   string
	name   string  // for the log: what "other" was
	parent procKey // zero when the parent is not a lab process
	// base is own+children when the run began: zero for a process born
	// during the run, its reading at the first scan otherwise.
	base uint64
	// own and children as the last scan that saw it read them; own grows
	// by the CPU used after that scan once the process is gone.
	own, children uint64
	// handedOn is the part of the children time that tracked children
	// brought in when they were reaped: it is counted as theirs.
	handedOn uint64
	// owed is, once the process is gone, what of its time its parent's
	// children time has not shown yet.
	owed uint64
}

func (p *procTrack) used() float64 {
	u := int64(p.own+p.children) - int64(p.base) - int64(p.handedOn)
	return float64(max(u, 0)) / clockTicks
}

// procAccount adds up the CPU of a run's processes by kind from scans of
// /proc taken a few times a second. Processes come and go between scans:
// the CPU a process used after the last scan that saw it reaches its
// parent's children time (cutime+cstime) when the parent reaps it. So when
// a tracked process is gone, its final time is its last reading plus the
// part of its parent's children time growth that the readings of the
// children gone do not explain (exact for one child reaped between two
// scans; shared in proportion to the last readings for several), and the
// parent does not count it again. A process that starts and ends between
// two scans is counted in its parent's kind. What is lost: the last
// fraction of a second of a process whose parent is not a lab process (the
// bench reads the bastion's layercast, whose parent it is, from its exit
// status instead).
type procAccount struct {
	runStart uint64 // clock ticks after boot when the run began
	first    bool   // no scan yet
	procs    map[procKey]*procTrack
	alive    map[procKey]bool // seen at the last scan
	// unmatched is the children time each process gained at the last scan
	// with no child gone to explain it: a scan reads /proc in pid order,
	// and pids wrap (32,768 here, and the lab makes thousands of
	// processes), so a child with a lower pid than its parent's can be
	// read alive, then reaped, before its parent is read with its time.
	// The child is found gone one scan later; that growth is its.
	unmatched map[procKey]uint64
	// pending are children gone at the last scan that their living
	// parent's children time has not paid for yet, by parent.
	pending map[procKey][]*procTrack
}

func newProcAccount(runStart uint64) *procAccount {
	return &procAccount{runStart: runStart, first: true, procs: map[procKey]*procTrack{}, alive: map[procKey]bool{}, unmatched: map[procKey]uint64{}}
}

// observe takes one scan: the stat of every lab process and its kind
// (kinds[i] is scan[i]'s).
func (a *procAccount) observe(scan []procStat, kinds []string) {
	a.observeNamed(scan, kinds, nil)
}

// observeNamed is observe with each process's name (names may be nil).
func (a *procAccount) observeNamed(scan []procStat, kinds, names []string) {
	now := make(map[procKey]bool, len(scan))
	byPid := make(map[int]procKey, len(scan))
	grown := make(map[procKey]uint64, len(scan)) // children time growth since the last scan
	for i, st := range scan {
		k := procKey{st.pid, st.start}
		now[k], byPid[st.pid] = true, k
		p := a.procs[k]
		if p == nil {
			p = &procTrack{kind: kinds[i]}
			if names != nil {
				p.name = names[i]
			}
			if a.first && st.start < a.runStart {
				p.base = st.own + st.children
			}
			a.procs[k] = p
		} else {
			if st.children > p.children {
				grown[k] = st.children - p.children
			}
			// A process that exec'd since (the shell sshd starts becomes
			// the node) is what it now is, for all its time.
			if kinds[i] != p.kind {
				p.kind = kinds[i]
				if names != nil {
					p.name = names[i]
				}
			}
		}
		p.own, p.children = max(p.own, st.own), max(p.children, st.children)
	}
	for _, st := range scan {
		if p := a.procs[procKey{st.pid, st.start}]; p.parent == (procKey{}) {
			if pk, ok := byPid[st.ppid]; ok {
				p.parent = pk
			}
		}
	}
	// Processes gone since the last scan, by parent.
	gone := map[procKey][]*procTrack{}
	for k := range a.alive {
		if now[k] {
			continue
		}
		if p := a.procs[k]; p.parent != (procKey{}) && a.alive[p.parent] {
			gone[p.parent] = append(gone[p.parent], p)
		}
	}
	// First the lines that ended with their parent: the final time of the
	// highest of their ancestors that ended with them, recovered from its
	// living parent's growth below, holds what they used after their last
	// reading; only their readings are handed on, by that ancestor, which
	// is known to have used them too. (Handed on by the parent when its own
	// parent ended too, they pushed the parent below zero, floored, while
	// the ancestor got them again.)
	within := map[*procTrack]uint64{} // readings of descendants that ended with it
	for pk, kids := range gone {
		if now[pk] {
			continue
		}
		if top := a.endedWith(a.procs[pk], now); top != nil {
			for _, c := range kids {
				top.handedOn += c.own + c.children
				within[top] += c.own + c.children
			}
		}
	}
	// Then the living parents' growth. A child gone is owed what it is
	// known to have used (its reading and its descendants'), which its
	// parent's children time gains when the parent reaps it; more than
	// that is what the children used after their last readings, shared by
	// what each is known to have used. (Shared by the children's readings
	// alone, a connection whose node was busy got the share of one whose
	// node idled and went below zero, floored, while the other counted the
	// busy node's time again.) The gain can come a scan late: a scan reads
	// /proc in pid order, so a parent read before it reaped a child whose
	// pid comes later shows the gain only at the next scan, while the
	// child is already gone. Such a child is owed for one more scan; what
	// is never paid (an orphan that init reaped) stays its reading.
	pending := map[procKey][]*procTrack{}
	paid := map[procKey]bool{}
	for pk, kids := range gone {
		for _, c := range kids {
			c.own += within[c]
			c.owed = c.own + c.children
		}
		if now[pk] {
			paid[pk] = true
		}
	}
	for pk := range a.pending {
		if now[pk] {
			paid[pk] = true
		}
	}
	for pk := range paid {
		parent := a.procs[pk]
		kids := append(slices.Clone(a.pending[pk]), gone[pk]...)
		var known uint64
		for _, c := range kids {
			known += c.owed
		}
		d := grown[pk] + a.unmatched[pk]
		parent.handedOn += d
		if d < known {
			// Paid in the order they went; the unpaid of this scan wait
			// one more.
			rest := d
			for _, c := range kids {
				pay := min(rest, c.owed)
				c.owed -= pay
				rest -= pay
			}
			for _, c := range gone[pk] {
				if c.owed > 0 {
					pending[pk] = append(pending[pk], c)
				}
			}
			continue
		}
		// The time after the last readings goes to the children gone in
		// this scan, or, with none, to those a scan late.
		to := gone[pk]
		if len(to) == 0 {
			to = a.pending[pk]
		}
		var weight uint64
		for _, c := range to {
			weight += c.own + c.children
		}
		extra := d - known
		for i, c := range to {
			var share uint64
			switch {
			case i == len(to)-1:
				share = extra // the rest, so that rounding loses nothing
			case weight > 0:
				share = (d - known) * (c.own + c.children) / weight
			default:
				share = (d - known) / uint64(len(to))
			}
			c.own += share
			extra -= share
		}
		for _, c := range kids {
			c.owed = 0
		}
	}
	unmatched := make(map[procKey]uint64)
	for k, d := range grown {
		if !paid[k] {
			unmatched[k] = d
		}
	}
	a.pending = pending
	a.unmatched = unmatched
	a.alive = now
	a.first = false
}

// endedWith returns the highest ancestor of p (p included) that ended
// with it and whose parent is still alive, the one its parent's growth is
// given to; nil when no living ancestor reaped the line, whose time then
// reached nothing tracked.
func (a *procAccount) endedWith(p *procTrack, now map[procKey]bool) *procTrack {
	for p.parent != (procKey{}) && a.alive[p.parent] {
		if now[p.parent] {
			return p
		}
		p = a.procs[p.parent]
	}
	return nil
}

// secondsByName returns the CPU seconds of each process name of a kind.
func (a *procAccount) secondsByName(kind string) map[string]float64 {
	out := map[string]float64{}
	for _, p := range a.procs {
		if p.kind == kind {
			out[p.name] += p.used()
		}
	}
	return out
}

// seconds returns the CPU seconds of each kind since the run began.
func (a *procAccount) seconds() map[string]float64 {
	out := map[string]float64{}
	for _, p := range a.procs {
		out[p.kind] += p.used()
	}
	return out
}

// labNetns maps the inode of each lab machine's network namespace to the
// machine's role.
type labNetns map[uint64]string

func netnsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat netns %s: %w", path, err)
	}
	return st.Ino, nil
}

// procNetns returns the inode of pid's network namespace.
func procNetns(pid int) (uint64, bool) {
	l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "ns", "net"))
	if err != nil {
		return 0, false
	}
	// net:[4026531840]
	l = strings.TrimSuffix(strings.TrimPrefix(l, "net:["), "]")
	ino, err := strconv.ParseUint(l, 10, 64)
	return ino, err == nil
}

// procName is the name a process goes by: its command name, or the base
// name of its argv[0] when the command name is "exe" (programs that re-exec
// /proc/self/exe under another name, as dockerd runs docker-untar).
func procName(pid int, comm string) string {
	if comm != "exe" {
		return comm
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return comm
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	if argv0 == "" {
		return comm
	}
	return filepath.Base(argv0)
}

// classify names the kind of a lab process from its command name and the
// role of its machine: nodes, Docker and sshd count only on hosts,
// layercast only on the bastion.
func classify(comm, role string) string {
	if role == roleKernel {
		return KindKernel
	}
	switch k := kindOfName(comm); {
	case k == KindRegistry,
		role == "host" && (k == KindNode || k == KindDocker || k == KindSSHD),
		role == "bastion" && k == KindLayercast:
		return k
	}
	return KindOther
}

// kindOfName is the kind a program's name stands for, wherever it runs.
func kindOfName(comm string) string {
	switch {
	case strings.HasPrefix(comm, "layercast-node"):
		// "layercast-node", or "layercast-node-" for a cached binary
		// (layercast-node-<sha256>, cut to 15 bytes by the kernel)
		return KindNode
	case comm == "dockerd" || comm == "docker-untar" || strings.HasPrefix(comm, "containerd") || comm == "runc" || comm == "docker-proxy":
		return KindDocker
	case comm == "sshd":
		return KindSSHD
	case comm == "layercast":
		return KindLayercast
	case comm == "docker-registry" || comm == "registry":
		return KindRegistry
	}
	return KindOther
}

// procMeter scans /proc every interval during a run and accounts the CPU
// of the lab's processes, those whose network namespace is a lab
// machine's, and of the kernel's threads. Besides the totals by kind it keeps each host's node CPU over
// time, to tell what nodes use once their host is done.
type procMeter struct {
	stop context.CancelFunc
	done chan struct{}

	// Owned by the scanning goroutine until done is closed.
	acct  *procAccount
	roles map[uint64]string // netns inode → machine role
	hosts map[uint64]string // netns inode → host name
	known map[procKey]procInfo
	nodes map[string][]nodeSample // host → node CPU by scan time
	err   error
}

// procInfo is what a process's first sight decides.
type procInfo struct {
	lab  bool
	role string // "bastion", "host", ...
	comm string // the command name it was classified by
	kind string
	host string // the host's name, for nodes
	name string
}

// nodeSample is the CPU seconds a host's node processes had used by t.
type nodeSample struct {
	t   time.Time
	cpu float64
}

// machineNetns names one lab machine for the meter.
type machineNetns struct {
	name, role, netnsPath string
}

// bootTicks is the clock-tick count since boot at t, as /proc/uptime tells.
func bootTicks() (uint64, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, fmt.Errorf("read uptime: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("parse /proc/uptime %q", b)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/uptime: %w", err)
	}
	return uint64(up * clockTicks), nil
}

// procScanEvery is how often the bench's meter scans /proc during a run to
// hosts. A process's last fraction of a second is recovered from its
// parent, but one that starts and ends between two scans counts in its
// parent's kind (see procAccount): a node that lives a second, as on one
// host with a 10 MB image, must be seen at least once. A scan costs about
// 33 µs per process on the lab's machine (BenchmarkProcMeterScan), and a
// lab host runs five or six during a job: every 200 ms the meter took
// 0.2–0.26 of a core at 200 hosts, CPU the lab's hosts then lacked. So it
// scans every 20 ms per host, within 200 ms and a second: 200 ms up to 10
// hosts, about 1 % of a core at 40, and 4 % at 200.
func procScanEvery(hosts int) time.Duration {
	return min(max(time.Duration(hosts)*20*time.Millisecond, 200*time.Millisecond), time.Second)
}

func startProcMeter(ctx context.Context, machines []machineNetns, every time.Duration) (*procMeter, error) {
	m := &procMeter{
		roles: map[uint64]string{}, hosts: map[uint64]string{},
		known: map[procKey]procInfo{}, nodes: map[string][]nodeSample{}, done: make(chan struct{}),
	}
	for _, mc := range machines {
		ino, err := netnsInode(mc.netnsPath)
		if err != nil {
			return nil, err
		}
		m.roles[ino] = mc.role
		if mc.role == "host" {
			m.hosts[ino] = mc.name
		}
	}
	start, err := bootTicks()
	if err != nil {
		return nil, err
	}
	m.acct = newProcAccount(start)
	if err := m.scan(); err != nil {
		return nil, err
	}
	ctx, m.stop = context.WithCancel(ctx)
	go func() {
		defer close(m.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				m.err = m.scan()
				return
			case <-tick.C:
				if err := m.scan(); err != nil {
					m.err = err
					return
				}
			}
		}
	}()
	return m, nil
}

// scan reads every process once and feeds the lab's to the account.
func (m *procMeter) scan() error {
	d, err := os.Open("/proc")
	if err != nil {
		return fmt.Errorf("scan processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("scan processes: %w", err)
	}
	at := time.Now()
	var scan []procStat
	var kinds, pnames []string
	nodeCPU := map[string]float64{}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", n, "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		st, err := parseProcStat(string(b))
		if err != nil {
			return err
		}
		k := procKey{pid, st.start}
		info, seen := m.known[k]
		if !seen {
			if isKernelThread(st) {
				info = procInfo{lab: true, role: roleKernel}
			} else {
				ino, ok := procNetns(pid)
				info = procInfo{role: m.roles[ino], host: m.hosts[ino]}
				info.lab = ok && info.role != ""
			}
		}
		if exec := info.lab && info.comm != st.comm; exec || !seen {
			// First seen, or exec'd since: the shell sshd forks for a
			// command becomes the node, and a scan between the fork and
			// the exec saw the shell.
			if info.lab {
				info.comm = st.comm
				info.name = info.role + ":" + procName(pid, st.comm)
				info.kind = classify(procName(pid, st.comm), info.role)
			}
			m.known[k] = info
		}
		if !info.lab {
			continue
		}
		scan = append(scan, st)
		kinds = append(kinds, info.kind)
		pnames = append(pnames, info.name)
		if info.kind == KindNode {
			nodeCPU[info.host] += float64(st.own+st.children) / clockTicks
		}
	}
	m.acct.observeNamed(scan, kinds, pnames)
	for h, c := range nodeCPU {
		m.nodes[h] = append(m.nodes[h], nodeSample{at, c})
	}
	return nil
}

// finish stops scanning after a last scan and returns the CPU seconds by
// kind and each host's node CPU over time.
func (m *procMeter) finish() (map[string]float64, map[string][]nodeSample, error) {
	m.stop()
	<-m.done
	if m.err != nil {
		return nil, nil, m.err
	}
	return m.acct.seconds(), m.nodes, nil
}

// others lists the CPU seconds of the processes counted as other, by
// machine role and name, the largest first (after finish).
func (m *procMeter) others(n int) []string {
	by := m.acct.secondsByName(KindOther)
	names := make([]string, 0, len(by))
	for k := range by {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(by[b], by[a]) })
	var out []string
	for _, k := range names[:min(n, len(names))] {
		out = append(out, fmt.Sprintf("%s %.1fs", k, by[k]))
	}
	return out
}

// idleNodeCPU is what nodes use once their host is done: the CPU seconds
// per second of the nodes from each host's done time until the node's last
// scan (the job's end), over every host that got done. secs is the time
// summed over those hosts.
func idleNodeCPU(samples map[string][]nodeSample, done map[string]time.Time) (rate, secs float64) {
	var cpu float64
	for host, d := range done {
		ss := samples[host]
		if len(ss) == 0 || !ss[len(ss)-1].t.After(d) {
			continue
		}
		last := ss[len(ss)-1]
		at := ss[0].cpu
		for i := 1; i < len(ss); i++ {
			if ss[i].t.Before(d) {
				at = ss[i].cpu
				continue
			}
			a, b := ss[i-1], ss[i]
			if a.t.Before(d) {
				f := d.Sub(a.t).Seconds() / b.t.Sub(a.t).Seconds()
				at = a.cpu + f*(b.cpu-a.cpu)
			}
			break
		}
		cpu += last.cpu - at
		secs += last.t.Sub(d).Seconds()
	}
	if secs <= 0 {
		return 0, 0
	}
	return cpu / secs, secs
}

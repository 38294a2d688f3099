package bench

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat_ReadsTimesAfterACommandNameWithSpacesAndParens(t *testing.T) {
	line := "4242 (we (ird) name) S 17 4242 4242 0 -1 4194560 1 2 3 4 120 30 7 5 20 0 12 0 98765 1 2 3\n"
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := procStat{pid: 4242, ppid: 17, comm: "we (ird) name", state: 'S', own: 150, children: 12, start: 98765}
	if st != want {
		t.Errorf("got %+v\nwant %+v", st, want)
	}
	for _, bad := range []string{"", "12 noparens S 1", "12 (x) S 1 2 3", "x (y) S 1 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestParseProcStat_ReadsThisProcess(t *testing.T) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip("no /proc")
	}
	st, err := parseProcStat(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if st.pid <= 0 || st.start == 0 || st.comm == "" {
		t.Errorf("%+v", st)
	}
}

// scanOf builds a scan: each proc is pid, ppid, own, children, start.
func scanOf(procs ...[5]uint64) []procStat {
	var out []procStat
	for _, p := range procs {
		out = append(out, procStat{pid: int(p[0]), ppid: int(p[1]), own: p[2], children: p[3], start: p[4]})
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestProcAccount_CountsOnlyTheRunAndRecoversTheTailOfAReapedChild(t *testing.T) {
	a := newProcAccount(1000)
	kinds := func(k ...string) []string { return k }
	// dockerd (pid 10) ran before the run: 500 ticks already count for
	// nothing. sshd (pid 20) too.
	a.observe(scanOf([5]uint64{10, 1, 500, 40, 900}, [5]uint64{20, 1, 30, 0, 900}), kinds(KindDocker, KindSSHD))
	// docker-untar (pid 11, child of dockerd) and a node (pid 21, child
	// of sshd) appear.
	a.observe(scanOf(
		[5]uint64{10, 1, 510, 40, 900}, [5]uint64{11, 10, 50, 0, 1100},
		[5]uint64{20, 1, 31, 0, 900}, [5]uint64{21, 20, 200, 0, 1100},
	), kinds(KindDocker, KindDocker, KindSSHD, KindNode))
	// Both end and are reaped; untar used 30 more ticks after the last
	// scan (its parent's children time grew by 80), the node 5 (205).
	a.observe(scanOf([5]uint64{10, 1, 520, 120, 900}, [5]uint64{20, 1, 33, 205, 900}), kinds(KindDocker, KindSSHD))
	got := a.seconds()
	// docker: dockerd's own 20 + untar's 80; sshd: own 3; node: 205.
	for kind, want := range map[string]float64{KindDocker: 1.0, KindSSHD: 0.03, KindNode: 2.05} {
		if !near(got[kind], want) {
			t.Errorf("%s: %.2f s, want %.2f (all: %v)", kind, got[kind], want, got)
		}
	}
}

func TestProcAccount_SharesAParentsGrowthAmongChildrenReapedTogether(t *testing.T) {
	a := newProcAccount(1000)
	a.observe(scanOf([5]uint64{10, 1, 0, 0, 1001}), []string{KindDocker})
	a.observe(scanOf([5]uint64{10, 1, 0, 0, 1001}, [5]uint64{11, 10, 100, 0, 1002}, [5]uint64{12, 10, 300, 0, 1003}),
		[]string{KindDocker, KindNode, KindOther})
	// 40 ticks more in total after the last readings, shared 1:3.
	a.observe(scanOf([5]uint64{10, 1, 0, 440, 1001}), []string{KindDocker})
	got := a.seconds()
	if !near(got[KindNode], 1.10) || !near(got[KindOther], 3.30) || !near(got[KindDocker], 0) {
		t.Errorf("%v, want node 1.10, other 3.30, docker 0", got)
	}
}

func TestProcAccount_ShortLivedChildCountsForItsParentAndPidReuseIsANewProcess(t *testing.T) {
	a := newProcAccount(1000)
	a.observe(scanOf([5]uint64{10, 1, 0, 0, 1001}, [5]uint64{30, 1, 7, 0, 1001}), []string{KindSSHD, KindOther})
	// A child that lived between two scans shows only in the parent's
	// children time; pid 30 ended and its pid now names another process.
	a.observe(scanOf([5]uint64{10, 1, 1, 25, 1001}, [5]uint64{30, 10, 4, 0, 1500}), []string{KindSSHD, KindNode})
	got := a.seconds()
	if !near(got[KindSSHD], 0.26) || !near(got[KindOther], 0.07) || !near(got[KindNode], 0.04) {
		t.Errorf("%v, want sshd 0.26, other 0.07, node 0.04", got)
	}
}

// The shell sshd forks for a command execs the node: a scan before the
// exec saw the shell, and the process's whole time is the node's.
func TestProcAccount_AProcessThatExecdCountsAsWhatItBecame(t *testing.T) {
	a := newProcAccount(1000)
	a.observe(scanOf([5]uint64{20, 1, 0, 0, 900}), []string{KindSSHD})
	a.observe(scanOf([5]uint64{20, 1, 0, 0, 900}, [5]uint64{21, 20, 1, 0, 1100}), []string{KindSSHD, KindOther})
	a.observe(scanOf([5]uint64{20, 1, 0, 0, 900}, [5]uint64{21, 20, 150, 0, 1100}), []string{KindSSHD, KindNode})
	a.observe(scanOf([5]uint64{20, 1, 0, 160, 900}), []string{KindSSHD})
	got := a.seconds()
	if !near(got[KindNode], 1.60) || !near(got[KindOther], 0) || !near(got[KindSSHD], 0) {
		t.Errorf("%v, want node 1.60 and nothing else", got)
	}
}

func TestProcAccount_ParentAndChildEndingTogetherCountOnce(t *testing.T) {
	a := newProcAccount(1000)
	// listener sshd 1 → session sshd 2 → node 3
	a.observe(scanOf([5]uint64{1, 0, 0, 0, 900}, [5]uint64{2, 1, 5, 0, 1001}, [5]uint64{3, 2, 100, 0, 1002}),
		[]string{KindSSHD, KindSSHD, KindNode})
	// Node and session both gone: the session reaped the node (102 ticks)
	// and was reaped by the listener (own 6 + children 102).
	a.observe(scanOf([5]uint64{1, 0, 0, 108, 900}), []string{KindSSHD})
	// The node keeps its last reading; its 2 last ticks land on sshd.
	wantNodeAndSSHD(t, a, 1.00, 0.08)
}

// wantNodeAndSSHD checks an account's node and sshd seconds, and that
// nothing else was counted.
func wantNodeAndSSHD(t *testing.T, a *procAccount, node, sshd float64) {
	t.Helper()
	got := a.seconds()
	if !near(got[KindNode], node) || !near(got[KindSSHD], sshd) {
		t.Errorf("%v, want node %.2f, sshd %.2f", got, node, sshd)
	}
	if total := got[KindNode] + got[KindSSHD]; !near(total, node+sshd) {
		t.Errorf("total %.2f, want %.2f: counted twice or lost", total, node+sshd)
	}
}

func TestIdleNodeCPU_IsTheNodesRateAfterTheirHostsWereDone(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	samples := map[string][]nodeSample{
		// h1 done at 10 s, seeded until 20 s using 0.5 s of CPU.
		"h1": {{at(9), 5}, {at(11), 7}, {at(20), 7.4}},
		// h2 done at 18 s: 2 s idle, 0.1 s of CPU (interpolated at 18: 9.0).
		"h2": {{at(16), 8}, {at(19), 9.5}, {at(20), 9.1 + 0.1}},
		// h3 never done: not counted.
		"h3": {{at(1), 1}, {at(20), 50}},
	}
	done := map[string]time.Time{"h1": at(10), "h2": at(18)}
	rate, secs := idleNodeCPU(samples, done)
	// h1: 7.4 - 6 = 1.4 over 10 s; h2: 9.2 - 9.0 = 0.2 over 2 s.
	if !near(secs, 12) || math.Abs(rate-1.6/12) > 1e-9 {
		t.Errorf("rate %.4f over %.1f s, want %.4f over 12 s", rate, secs, 1.6/12)
	}
}

// TestBusyChild burns CPU for the meter test; skipped unless that test
// started it.
func TestBusyChild(t *testing.T) {
	if os.Getenv("LAYERCAST_BENCH_BUSY_CHILD") == "" {
		t.Skip("run by TestProcMeter_CountsAProcessThatEndedBetweenScans")
	}
	// About 0.3 s of CPU, then exit at once, between two scans.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
}

func TestProcMeter_CountsAProcessThatEndedBetweenScans(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A copy of this binary named like a cached node binary
	// (layercast-node-<sha256>), in this process's network namespace
	// taken as a host's.
	bin := filepath.Join(t.TempDir(), "layercast-node-"+strings.Repeat("ab", 32))
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	// Scans far apart next to the child's 0.3 s would miss it.
	const every = 100 * time.Millisecond
	m, err := startProcMeter(context.Background(), []machineNetns{{name: "h1", role: "host", netnsPath: "/proc/self/ns/net"}}, every)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run", "^TestBusyChild$")
	cmd.Env = append(os.Environ(), "LAYERCAST_BENCH_BUSY_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		m.finish()
		t.Fatalf("%v: %s", err, out)
	}
	time.Sleep(2 * every)
	byKind, samples, err := m.finish()
	if err != nil {
		t.Fatal(err)
	}
	want := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	if got := byKind[KindNode]; math.Abs(got-want) > 0.03 {
		t.Errorf("node CPU %.2f s, the process used %.2f s", got, want)
	}
	if len(samples["h1"]) == 0 {
		t.Error("no node samples for h1")
	}
}

func TestProcScanEvery_SeesAOneSecondNodeOnASmallLabAndStaysCheapOnALargeOne(t *testing.T) {
	// The bench's smoke runs (1 to 3 hosts, 10 MB) have nodes that live
	// about a second: a node never seen counts as its parent's kind.
	for _, hosts := range []int{1, 3, 10} {
		if d := procScanEvery(hosts); d > 200*time.Millisecond {
			t.Errorf("%d hosts: a scan every %v may miss a node living a second", hosts, d)
		}
	}
	for hosts := 1; hosts < 300; hosts++ {
		if d, next := procScanEvery(hosts), procScanEvery(hosts+1); next < d || next > time.Second {
			t.Errorf("%d hosts: every %v, %d hosts: every %v", hosts, d, hosts+1, next)
		}
	}
	if d := procScanEvery(200); d != time.Second {
		t.Errorf("200 hosts: every %v, want a second (a scan per 200 ms took a quarter of a core)", d)
	}
}

// BenchmarkProcMeterScan times one scan of /proc with every process on the
// machine taken as a lab host's (this process's network namespace), the
// meter's cost per process: run it with a lab up to see it at that lab's
// size (go test ./testbed/bench -run '^$' -bench ProcMeterScan).
func BenchmarkProcMeterScan(b *testing.B) {
	m, err := startProcMeter(context.Background(), []machineNetns{{name: "h1", role: "host", netnsPath: "/proc/self/ns/net"}}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer m.finish()
	names, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	procs := 0
	for _, n := range names {
		if _, err := strconv.Atoi(n.Name()); err == nil {
			procs++
		}
	}
	for b.Loop() {
		if err := m.scan(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(procs)/1e3, "µs/proc")
	b.ReportMetric(float64(procs), "procs")
}

// A connection's whole tree ends between two scans (the bastion closed
// it): the listener reaps sshd's monitor, which reaped the session, which
// reaped the node. The node's time was once counted again as sshd's: the
// session's share went below zero and was floored, while the monitor got
// the node's whole time from the listener's growth.
func TestProcAccount_ATreeEndingTogetherCountsOnce(t *testing.T) {
	a := newProcAccount(1000)
	// listener 1 → monitor 2 → session 3 → node 4
	a.observe(scanOf([5]uint64{1, 0, 0, 0, 900}, [5]uint64{2, 1, 3, 0, 1001}, [5]uint64{3, 2, 5, 0, 1001}, [5]uint64{4, 3, 100, 0, 1002}),
		[]string{KindSSHD, KindSSHD, KindSSHD, KindNode})
	// All three gone: node 102 ticks, session 6 (+102), monitor 4 (+108).
	a.observe(scanOf([5]uint64{1, 0, 0, 112, 900}), []string{KindSSHD})
	// The node keeps its last reading; its 2 last ticks land on sshd.
	wantNodeAndSSHD(t, a, 1.00, 0.12)
}

// Two connections' trees ending in the same interval, one node busy and
// one nearly idle (the lab's teardown at 100 hosts): the listener's growth
// is shared by what each tree is known to have used, so neither monitor
// goes below zero and takes the other's node time as sshd's. Sharing by
// the monitors' own readings alone put 393 CPU-s of nodes under sshd in a
// 100-host run.
func TestProcAccount_TreesEndingTogetherKeepTheirNodesTime(t *testing.T) {
	a := newProcAccount(1000)
	// listener 1 → monitor 2 → session 3 → node 4 (busy, 1,000 ticks)
	//            → monitor 5 → session 6 → node 7 (idle, 10 ticks)
	a.observe(scanOf([5]uint64{1, 0, 0, 0, 900},
		[5]uint64{2, 1, 3, 0, 1001}, [5]uint64{3, 2, 5, 0, 1001}, [5]uint64{4, 3, 1000, 0, 1002},
		[5]uint64{5, 1, 3, 0, 1001}, [5]uint64{6, 5, 5, 0, 1001}, [5]uint64{7, 6, 10, 0, 1002}),
		[]string{KindSSHD, KindSSHD, KindSSHD, KindNode, KindSSHD, KindSSHD, KindNode})
	// All six gone, each node 2 ticks more: the listener grew by
	// (3+5+1002) + (3+5+12).
	a.observe(scanOf([5]uint64{1, 0, 0, 1030, 900}), []string{KindSSHD})
	// The nodes keep their readings; their 4 last ticks land on sshd.
	wantNodeAndSSHD(t, a, 10.10, 0.20)
}

// A child whose pid is lower than its parent's (pids wrap) is read alive,
// then reaped before the same scan reads its parent with the child's time;
// the next scan finds it gone. Its time counts once, as its own.
func TestProcAccount_AChildReapedWithinAScanCountsOnce(t *testing.T) {
	a := newProcAccount(1000)
	// session 500 → node 30 (the pid wrapped)
	kinds := []string{KindNode, KindSSHD}
	a.observe(scanOf([5]uint64{30, 500, 100, 0, 1002}, [5]uint64{500, 1, 5, 0, 1001}), kinds)
	// The node read at 150, then reaped at 152, then its parent read.
	a.observe(scanOf([5]uint64{30, 500, 150, 0, 1002}, [5]uint64{500, 1, 6, 152, 1001}), kinds)
	a.observe(scanOf([5]uint64{500, 1, 7, 152, 1001}), kinds[1:])
	wantNodeAndSSHD(t, a, 1.52, 0.07)
}

// Kernel threads (kthreadd, pid 2, and its children) count as the kernel
// kind wherever their namespace is; this test's own process, outside every
// lab machine, counts as nothing.
func TestProcMeter_CountsTheKernelsThreads(t *testing.T) {
	b, err := os.ReadFile("/proc/2/stat")
	if err != nil {
		t.Skip("no kthreadd in this pid namespace:", err)
	}
	if st, err := parseProcStat(string(b)); err != nil || !isKernelThread(st) {
		t.Fatalf("pid 2 (%v, %v) is not taken for a kernel thread", st.comm, err)
	}
	m, err := startProcMeter(context.Background(), nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.finish(); err != nil {
		t.Fatal(err)
	}
	kernel, self := 0, 0
	for k, info := range m.known {
		switch {
		case k.pid == os.Getpid():
			self++
			if info.lab {
				t.Errorf("this process counted as %s", info.kind)
			}
		case info.kind == KindKernel:
			kernel++
		}
	}
	if kernel < 2 || self != 1 {
		t.Errorf("%d kernel threads and this process %d times, want kthreadd and its threads, and this process once", kernel, self)
	}
	tracked := 0
	for _, p := range m.acct.procs {
		if p.kind == KindKernel {
			tracked++
		}
	}
	if tracked != kernel {
		t.Errorf("%d kernel threads accounted of %d seen", tracked, kernel)
	}
}

// The other order within a scan: the parent is read first (lower pid),
// then the child is reaped, then the scan reaches the child's pid and
// finds it gone while its parent's children time has not grown yet; the
// growth shows at the next scan. The child's time counts once, as its own,
// with what it used after its last reading. (This put about 190 CPU-s of
// nodes under sshd in a 100-host run after the fix above.)
func TestProcAccount_AChildReapedAfterItsParentWasReadCountsOnce(t *testing.T) {
	a := newProcAccount(1000)
	// session 500 → node 600
	kinds := []string{KindSSHD, KindNode}
	a.observe(scanOf([5]uint64{500, 1, 5, 0, 1001}, [5]uint64{600, 500, 100, 0, 1002}), kinds)
	// The session read with nothing reaped yet; the node, at 152, reaped
	// before the scan reached it.
	a.observe(scanOf([5]uint64{500, 1, 5, 0, 1001}), kinds[:1])
	a.observe(scanOf([5]uint64{500, 1, 6, 152, 1001}), kinds[:1])
	a.observe(scanOf([5]uint64{500, 1, 7, 152, 1001}), kinds[:1])
	wantNodeAndSSHD(t, a, 1.52, 0.07)
}

// A child gone that its parent never reaps (it was reparented to init)
// keeps its reading, and a later child the parent does reap still gets
// its own time, not the first one's.
func TestProcAccount_AnOrphanKeepsItsReadingAndALaterChildItsTime(t *testing.T) {
	a := newProcAccount(1000)
	// session 500 → orphan 600, and later node 700
	a.observe(scanOf([5]uint64{500, 1, 5, 0, 1001}, [5]uint64{600, 500, 40, 0, 1002}), []string{KindSSHD, KindNode})
	a.observe(scanOf([5]uint64{500, 1, 5, 0, 1001}, [5]uint64{700, 500, 10, 0, 1003}), []string{KindSSHD, KindNode})
	a.observe(scanOf([5]uint64{500, 1, 5, 0, 1001}, [5]uint64{700, 500, 90, 0, 1003}), []string{KindSSHD, KindNode})
	// The node, at 95, reaped between two scans.
	a.observe(scanOf([5]uint64{500, 1, 5, 95, 1001}), []string{KindSSHD})
	a.observe(scanOf([5]uint64{500, 1, 5, 95, 1001}), []string{KindSSHD})
	a.observe(scanOf([5]uint64{500, 1, 5, 95, 1001}), []string{KindSSHD})
	// orphan 0.40 + node 0.95; the session's 0.05 its own.
	wantNodeAndSSHD(t, a, 1.35, 0.05)
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// The faults of issue 6, injected in the middle of jobs on one lab. Every
// subtest checks the same outcome: the other hosts finish, the failed host
// is reported with a reason that says what happened, its daemon holds
// nothing of the job, nothing of the job is left on it once it is
// reachable again, and a rerun with --retry-failed completes just it.

const (
	faultTag  = "lab/fault:v1"
	faultSize = 30 * mb
	slowTag   = "lab/fault-small:v1"
)

// faultLab is the lab a fault test's subtests share.
type faultLab struct {
	lab *testbed.Lab
	img *testbed.Image
	// baseline is the duration of each host in a job without faults.
	baseline map[string]time.Duration
	// args are extra flags for the next inject's job.
	args []string
}

func TestFaults(t *testing.T) {
	labTest(t)
	fl := newFaultLab(t)
	lab := fl.lab

	t.Run("baseline", func(t *testing.T) {
		fl.clean(t)
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), faultTag)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
		}
		fl.baseline = map[string]time.Duration{}
		for _, h := range rep.Hosts {
			fl.baseline[h.Host] = h.Duration
		}
		t.Logf("baseline: %d MB to 4 hosts at 100mbit in %s; per host %v", faultSize/mb, rep.Duration.Round(100*time.Millisecond), roundAll(fl.baseline))
		assertNothingLeft(t, lab, rep)
	})

	t.Run("node binary killed", func(t *testing.T) {
		// A slower h02 is still downloading when its first layer, 6 MB
		// of the image's 30, is in.
		if err := lab.SlowLink(context.Background(), "h02", 4); err != nil {
			t.Fatal(err)
		}
		heal := func(t *testing.T) {
			if err := lab.HealLink(context.Background(), "h02"); err != nil {
				t.Error(err)
			}
		}
		fl.inject(t, "h02", func(t *testing.T, j *job, id string) {
			waitBytes(t, j, "h02", 4*mb)
			// Kill it the moment the daemon has the whole archive of a
			// layer prefix and has not answered: the daemon goes on and
			// creates the temporary image after the node is gone, and the
			// cleanup must wait for it (jobspec.LoadingFile).
			marker := filepath.Join(jobDir(lab, "h02", id), jobspec.LoadingFile)
			loading := ""
			for end := time.Now().Add(20 * time.Second); loading == "" && time.Now().Before(end) && j.hostShare("h02") < 0.8; time.Sleep(time.Millisecond) {
				if b, _ := os.ReadFile(marker); strings.HasPrefix(string(b), jobspec.TempRepo+":") {
					loading = strings.TrimSpace(string(b))
				}
			}
			pids := nodePIDs(t, lab, "h02", id)
			out, _ := lab.Exec(context.Background(), "h02", "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "layercast-tmp")
			t.Logf("h02's node is killed while its daemon loads %q; temporary images then: %q", loading, strings.TrimSpace(string(out)))
			if len(pids) == 0 {
				t.Fatal("no node process of the job on h02")
			}
			t.Logf("kill -9 %v on h02", pids)
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}, heal, "node binary exited early", "killed")
	})

	t.Run("node frozen", func(t *testing.T) {
		// A host that stops running its node mid-download (a VM paused,
		// a host starved to a standstill) while its connections stay up:
		// the bastion no longer hears the node, and says so, rather than
		// blaming the host's peers or waiting for the swarm to end. Once
		// the host runs again, its node finds its bastion gone and cleans
		// up by itself.
		if err := lab.SlowLink(context.Background(), "h03", 4); err != nil {
			t.Fatal(err)
		}
		var frozen []int
		thaw := func(t *testing.T) {
			for _, p := range frozen {
				_ = syscall.Kill(p, syscall.SIGCONT)
			}
			frozen = nil
			if err := lab.HealLink(context.Background(), "h03"); err != nil {
				t.Error(err)
			}
		}
		t.Cleanup(func() { thaw(t) })
		fl.args = []string{"--stall-timeout", "30s"}
		t.Cleanup(func() { fl.args = nil })
		fl.inject(t, "h03", func(t *testing.T, j *job, id string) {
			waitBytes(t, j, "h03", 4*mb)
			frozen = nodePIDs(t, lab, "h03", id)
			if len(frozen) == 0 {
				t.Fatal("no node process of the job on h03")
			}
			t.Logf("kill -STOP %v on h03", frozen)
			for _, p := range frozen {
				if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
		}, thaw, "the node sent nothing for", "frozen")
	})

	t.Run("dockerd stopped", func(t *testing.T) {
		var started bool
		start := func(t *testing.T) {
			if !started {
				started = true
				if err := lab.StartDocker(context.Background(), "h04"); err != nil {
					t.Fatal(err)
				}
			}
		}
		t.Cleanup(func() { start(t) })
		fl.inject(t, "h04", func(t *testing.T, j *job, id string) {
			waitBytes(t, j, "h04", 4*mb)
			if err := lab.StopDocker(context.Background(), "h04"); err != nil {
				t.Fatal(err)
			}
		}, start, "docker")
	})

	t.Run("disk full before the job", func(t *testing.T) {
		// No room for the layers in the work dir (the node binary is in
		// the node cache, elsewhere).
		if err := lab.FillDisk(context.Background(), "h01", 10<<20); err != nil {
			t.Fatal(err)
		}
		clear := func(t *testing.T) {
			if err := lab.ClearDisk(context.Background(), "h01"); err != nil {
				t.Error(err)
			}
		}
		fl.inject(t, "h01", nil, clear, "not enough disk space", "free")
	})

	t.Run("disk without room for the node binary", func(t *testing.T) {
		if err := lab.FillDisk(context.Background(), "h02", 1<<20); err != nil {
			t.Fatal(err)
		}
		clear := func(t *testing.T) {
			if err := lab.ClearDisk(context.Background(), "h02"); err != nil {
				t.Error(err)
			}
		}
		// Without a node cache the binary goes into the work dir in /tmp.
		fl.args = []string{"--no-node-cache"}
		t.Cleanup(func() { fl.args = nil })
		fl.inject(t, "h02", nil, clear, "not enough space in /tmp", "MB free")
	})

	t.Run("sshd gone at the start", func(t *testing.T) {
		if err := lab.StopSSHD(context.Background(), "h03"); err != nil {
			t.Fatal(err)
		}
		start := func(t *testing.T) {
			if err := lab.StartSSHD(context.Background(), "h03"); err != nil {
				t.Fatal(err)
			}
		}
		fl.inject(t, "h03", nil, start, "connect", "refused")
	})

	t.Run("one host ten times slower", func(t *testing.T) {
		// A smaller image keeps the slow host's 10mbit short. How long
		// each host took is logged, not asserted: on a two-core lab that
		// runs other lab tests beside this one, a host's time says more
		// about them than about h04 (the bench measures speed).
		small := makeImage(t, lab, testbed.ImageSpec{Tag: slowTag, Size: 16 * mb, Layers: 2})
		fl.clean(t)
		if err := lab.SlowLink(context.Background(), "h04", 10); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := lab.HealLink(context.Background(), "h04"); err != nil {
				t.Error(err)
			}
		})
		rep, code, j := runJob(t, lab, 4*time.Minute, "-i", lab.InventoryPath(), slowTag)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
		}
		var lines []string
		for _, h := range rep.Hosts {
			if got := imageOn(t, lab, h.Host, slowTag); got != small.ID {
				t.Errorf("%s: image %q, want %s", h.Host, got, small.ID)
			}
			lines = append(lines, fmt.Sprintf("%s %s", h.Host, h.Duration.Round(100*time.Millisecond)))
		}
		t.Logf("16 MB, h04 at 10mbit, the rest at 100mbit: %s", strings.Join(lines, ", "))
		assertNothingLeft(t, lab, rep)
	})

}

// A host's SSH connection lost while its node downloads, on a lab of its
// own: the host must be set up again on a new connection and end done.
// (Waiting for the bastion to give a silent connection up takes a minute.)
func TestFaults_ConnectionLost(t *testing.T) {
	labTest(t)
	fl := newFaultLab(t)
	lab := fl.lab

	t.Run("link cut then healed", func(t *testing.T) {
		// The link goes silent under the host's SSH connection while its
		// node downloads; once the bastion gives the connection up
		// (keepalives), the link comes back: the host is set up again on
		// a new connection, its lost node stopped and cleared, and it
		// ends done.
		heal := sync.OnceValue(func() error { return lab.HealLink(context.Background(), "h03") })
		t.Cleanup(func() {
			if err := heal(); err != nil {
				t.Error(err)
			}
		})
		fl.recovers(t, "h03", func(t *testing.T, j *job) {
			if err := lab.CutLink(context.Background(), "h03"); err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			j.waitFor(t, 2*time.Minute, func(e orchestrator.Event) bool {
				return e.Kind == orchestrator.EventHostLog && e.Host == "h03" && strings.Contains(e.Message, "connecting again")
			})
			t.Logf("h03 lost its connection %s after the cut", time.Since(cut).Round(100*time.Millisecond))
			if err := heal(); err != nil {
				t.Fatal(err)
			}
		})
	})

	t.Run("SSH connection dropped while the node runs", func(t *testing.T) {
		// The host stays reachable: only the connection ends (its sshd
		// session is killed), as when a crowded link drops one.
		if err := lab.SlowLink(context.Background(), "h02", 4); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lab.HealLink(context.Background(), "h02") })
		fl.recovers(t, "h02", func(t *testing.T, j *job) {
			sessions := sshSessionPIDs(t, lab, "h02")
			if len(sessions) == 0 {
				t.Fatal("h02: no sshd session")
			}
			t.Logf("kill -9 h02's sshd sessions %v", sessions)
			for _, p := range sessions {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		})
	})
}

// The faults at the bastion's end, on a lab of their own: the operator
// interrupts the job, the bastion dies. Their waits (the nodes' heartbeat
// timeout above all) overlap the other lab tests'.
func TestFaults_AtTheBastion(t *testing.T) {
	labTest(t)
	fl := newFaultLab(t)
	lab := fl.lab

	t.Run("operator presses ctrl-c", func(t *testing.T) {
		fl.clean(t)
		// Slower links, so the interrupt lands in the middle of the
		// transfer on every host.
		for _, h := range lab.Hosts() {
			if err := lab.SlowLink(context.Background(), h, 5); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = lab.HealLink(context.Background(), h) })
		}
		before := fl.daemonImages(t)
		report := filepath.Join(t.TempDir(), "report.json")
		j := startJob(t, lab, "--report", report, "-i", lab.InventoryPath(), faultTag)
		waitBytes(t, j, "h04", 1*mb)
		// A node frozen mid-transfer cannot finish before the interrupt
		// lands, whatever the machine's speed: at least h04 must end
		// cancelled, and teardown must deal with a node that does not answer.
		for _, pid := range nodePIDs(t, lab, "h04", j.info(t).ID) {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatalf("freeze h04's node %d: %v", pid, err)
			}
		}
		interrupted := time.Now()
		if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		rep, code := j.wait(t, 2*time.Minute)
		if code != 130 || rep == nil || !rep.Cancelled {
			t.Fatalf("exit %d, report %+v; want 130 and a cancelled report", code, rep)
		}
		var cancelled []string
		for _, h := range rep.Hosts {
			if h.State == orchestrator.HostCancelled {
				cancelled = append(cancelled, h.Host)
				if !strings.Contains(h.Error, "cancelled by the operator") {
					t.Errorf("%s: reason %q", h.Host, h.Error)
				}
			}
		}
		t.Logf("ctrl-c: %d hosts cancelled (%v), the rest were done", len(cancelled), cancelled)
		if !slices.Contains(cancelled, "h04") {
			t.Errorf("h04, frozen before the interrupt, is not reported cancelled")
		}
		assertNothingLeft(t, lab, rep)
		fl.assertDaemonsAsBefore(t, rep, before)
		if len(cancelled) == 0 {
			j.mu.Lock()
			for _, e := range j.events {
				if e.Kind == orchestrator.EventHostState || e.Kind == orchestrator.EventJobDone {
					t.Logf("%s %s %s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Host, e.State, e.Message)
				}
			}
			j.mu.Unlock()
			t.Fatalf("every host was done before the interrupt at %s: nothing was cancelled", interrupted.Format("15:04:05.000"))
		}
		for _, h := range lab.Hosts() {
			_ = lab.HealLink(context.Background(), h)
		}
		fl.retry(t, report, cancelled)
	})

	t.Run("bastion killed with -9", func(t *testing.T) {
		fl.clean(t)
		before := fl.daemonImages(t)
		j := startJob(t, lab, "-i", lab.InventoryPath(), faultTag)
		waitBytes(t, j, "h01", 4*mb)
		id := j.info(t).ID
		// h01's node is frozen, as on a host too loaded to notice: it
		// stays behind with its dir until the next job removes both.
		frozen := nodePIDs(t, lab, "h01", id)
		for _, p := range frozen {
			_ = syscall.Kill(p, syscall.SIGSTOP)
		}
		t.Cleanup(func() {
			for _, p := range frozen {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		})
		frozenAt := time.Now()
		if err := j.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-j.done

		// Every other node notices and cleans up by itself. Its cleanup
		// is bounded (45 s): on a lab starved of CPU by the tests beside
		// it, a node may exit with its dir still there for the next job
		// to remove (checked below, with every host's leftovers).
		for _, h := range []string{"h02", "h03", "h04"} {
			took, ok := waitGone(lab, h, id, jobspec.DefaultHeartbeat+30*time.Second)
			if !ok && len(nodePIDs(t, lab, h, id)) == 0 {
				t.Logf("%s: node gone, its dir still there %s after the bastion died: %s", h, took, jobDir(lab, h, id))
				continue
			}
			if !ok {
				t.Errorf("%s: node of job %s still there %s after the bastion died: %v, %s", h, id, took, nodePIDs(t, lab, h, id), jobDir(lab, h, id))
				continue
			}
			t.Logf("%s: node gone and dir removed %s after the bastion died", h, took.Round(100*time.Millisecond))
		}
		if len(frozen) == 0 || !dirExists(lab, "h01", id) {
			t.Fatalf("h01 kept nothing to clean up (node %v, dir %v)", frozen, dirExists(lab, "h01", id))
		}

		// The next job finds what is left on h01 and removes it, once the
		// frozen node is past the time in which it would have given up by
		// itself (it stopped touching its lock when it froze).
		time.Sleep(time.Until(frozenAt.Add(jobspec.AliveWithin + jobspec.AliveEvery)))
		rep, code, j2 := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), faultTag)
		if code != 0 {
			t.Fatalf("next job: exit %d; stderr:\n%s", code, j2.stderr.String())
		}
		var cleaned string
		j2.mu.Lock()
		for _, e := range j2.events {
			if e.Kind == orchestrator.EventHostLog && e.Host == "h01" && strings.Contains(e.Message, id) {
				cleaned = e.Message
			}
		}
		j2.mu.Unlock()
		t.Logf("next job on h01: %q", cleaned)
		if !strings.Contains(cleaned, "removed") || !strings.Contains(cleaned, "stopped its node") {
			t.Errorf("the next job did not report removing job %s's dir and node on h01: %q", id, cleaned)
		}
		for _, h := range lab.Hosts() {
			if left := leftovers(t, lab, h, id); left != "" {
				t.Errorf("%s: the killed job left:\n%s", h, left)
			}
			if got := imageOn(t, lab, h, faultTag); got != fl.img.ID {
				t.Errorf("%s: image %q after the next job, want %s", h, got, fl.img.ID)
			}
		}
		assertNothingLeft(t, lab, rep)
		// Nothing but the image itself came in.
		for h, imgs := range fl.daemonImages(t) {
			if extra := without(imgs, before[h]); len(extra) != 1 || !strings.HasPrefix(extra[0], faultTag+" ") {
				t.Errorf("%s: daemon gained %v, want only %s", h, extra, faultTag)
			}
		}
	})
}

// newFaultLab brings up the four hosts of a fault test and makes its image.
func newFaultLab(t *testing.T) *faultLab {
	t.Helper()
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 4, Rate: "100mbit"})
	return &faultLab{lab: lab, img: makeImage(t, lab, testbed.ImageSpec{Tag: faultTag, Size: faultSize, Layers: 3, BaseSize: 6 * mb, BaseLayers: 1})}
}

// recovers runs one job and, once host has 4 MB, lose (which makes host
// lose its SSH connection while its node downloads); host must be set up
// again on a new connection and the job end with every host done, the
// lost node gone, nothing of the job left and only the image gained.
func (fl *faultLab) recovers(t *testing.T, host string, lose func(*testing.T, *job)) {
	t.Helper()
	lab := fl.lab
	fl.clean(t)
	before := fl.daemonImages(t)
	j := startJob(t, lab, "-i", lab.InventoryPath(), faultTag)
	j.waitFor(t, time.Minute, func(e orchestrator.Event) bool { return e.Kind == orchestrator.EventJobStarted })
	id := j.info(t).ID
	waitBytes(t, j, host, 4*mb)
	first := nodePIDs(t, lab, host, id)
	if len(first) == 0 {
		t.Fatalf("%s: no node of the job", host)
	}
	lose(t, j)
	rep, code := j.wait(t, 4*time.Minute)
	if rep == nil {
		t.Fatalf("no report (exit %d); stderr:\n%s", code, j.stderr.String())
	}
	if code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, j.stderr.String())
	}
	for _, h := range rep.Hosts {
		if h.State != orchestrator.HostDone || imageOn(t, lab, h.Host, faultTag) != fl.img.ID {
			t.Errorf("%s: %s %q, image %q; want done with %s", h.Host, h.State, h.Error, imageOn(t, lab, h.Host, faultTag), fl.img.ID)
		}
	}
	var said []string
	j.mu.Lock()
	for _, e := range j.events {
		if e.Kind == orchestrator.EventHostLog && e.Host == host {
			said = append(said, e.Message)
		}
	}
	j.mu.Unlock()
	t.Logf("%s said: %q", host, said)
	joined := strings.Join(said, "\n")
	if !strings.Contains(joined, "lost the SSH connection") || !strings.Contains(joined, "connecting again") ||
		!strings.Contains(joined, "cleared what the lost SSH connection left") {
		t.Errorf("%s's log does not say its connection was lost, set up again and cleared: %q", host, said)
	}
	for _, p := range first {
		if running(p) {
			t.Errorf("%s: the first node, pid %d, still runs", host, p)
		}
	}
	assertNothingLeft(t, lab, rep)
	for h, imgs := range fl.daemonImages(t) {
		if extra := without(imgs, before[h]); len(extra) != 1 || !strings.HasPrefix(extra[0], faultTag+" ") {
			t.Errorf("%s: daemon gained %v, want only %s", h, extra, faultTag)
		}
	}
}

// inject runs one job with a fault aimed at host and checks the outcome.
// during (may be nil) runs once the job started; heal (may be nil) after
// the job ended. The host's failure reason must hold every reason string
// (case-insensitive).
func (fl *faultLab) inject(t *testing.T, host string, during func(*testing.T, *job, string), heal func(*testing.T), reasons ...string) {
	t.Helper()
	lab := fl.lab
	start := time.Now()
	fl.clean(t)
	before := fl.daemonImages(t)
	report := filepath.Join(t.TempDir(), "report.json")
	j := startJob(t, lab, append(append([]string{"--report", report, "-i", lab.InventoryPath()}, fl.args...), faultTag)...)
	if during != nil {
		j.waitFor(t, time.Minute, func(e orchestrator.Event) bool { return e.Kind == orchestrator.EventJobStarted })
		during(t, j, j.info(t).ID)
	}
	rep, code := j.wait(t, 4*time.Minute)
	jobDone := time.Now()
	if heal != nil {
		heal(t)
	}
	if rep == nil {
		t.Fatalf("no report (exit %d); stderr:\n%s", code, j.stderr.String())
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	res := hostResults(rep)
	r := res[host]
	t.Logf("%s: %s after %s: %s", host, r.State, r.Duration.Round(100*time.Millisecond), r.Error)
	if r.State != orchestrator.HostFailed {
		t.Errorf("%s ended %s, want failed", host, r.State)
	}
	for _, want := range reasons {
		if !strings.Contains(strings.ToLower(r.Error), strings.ToLower(want)) {
			t.Errorf("%s: reason %q does not say %q", host, r.Error, want)
		}
	}
	for _, h := range lab.Hosts() {
		if h == host {
			continue
		}
		if res[h].State != orchestrator.HostDone || imageOn(t, lab, h, faultTag) != fl.img.ID {
			t.Errorf("%s: %+v, image %q; want done with %s", h, res[h], imageOn(t, lab, h, faultTag), fl.img.ID)
		}
	}
	fl.logOthersSpeed(t, rep, host)
	// The failed host is reachable again: nothing of the job may be left.
	if took, ok := waitGone(lab, host, rep.JobID, 30*time.Second); !ok {
		t.Errorf("%s: job %s still has a node or dir there %s after the job", host, rep.JobID, took)
	}
	assertNothingLeft(t, lab, rep)
	fl.assertDaemonsAsBefore(t, rep, before)
	checked := time.Now()
	fl.retry(t, report, []string{host})
	t.Logf("took: job %s, heal and checks %s, retry %s", jobDone.Sub(start).Round(100*time.Millisecond),
		checked.Sub(jobDone).Round(100*time.Millisecond), time.Since(checked).Round(100*time.Millisecond))
}

// retry reruns the job with --retry-failed and checks that it takes just
// the failed hosts, and that they get the image.
func (fl *faultLab) retry(t *testing.T, report string, failed []string) {
	t.Helper()
	rep, code, j := runJob(t, fl.lab, 3*time.Minute, "--retry-failed", report, "-i", fl.lab.InventoryPath(), faultTag)
	if code != 0 {
		t.Errorf("retry: exit %d; report %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
	}
	var got []string
	for _, h := range rep.Hosts {
		got = append(got, h.Host)
		if h.State != orchestrator.HostDone || imageOn(t, fl.lab, h.Host, faultTag) != fl.img.ID {
			t.Errorf("retry: %s %s %s", h.Host, h.State, h.Error)
		}
	}
	sort.Strings(got)
	want := append([]string(nil), failed...)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("retry ran on %v, want just %v", got, want)
	}
	assertNothingLeft(t, fl.lab, rep)
}

// logOthersSpeed logs the other hosts' times beside the baseline's. It
// asserts nothing: the lab tests run side by side on two cores, so a
// host's time says as much about the other tests as about the fault (the
// bench measures speed).
func (fl *faultLab) logOthersSpeed(t *testing.T, rep *orchestrator.Report, faulty string) {
	t.Helper()
	var lines []string
	for _, h := range rep.Hosts {
		if base, ok := fl.baseline[h.Host]; ok && h.Host != faulty && h.State == orchestrator.HostDone {
			lines = append(lines, fmt.Sprintf("%s %s (baseline %s)", h.Host, h.Duration.Round(100*time.Millisecond), base.Round(100*time.Millisecond)))
		}
	}
	t.Logf("with the fault on %s: %s", faulty, strings.Join(lines, ", "))
}

// clean removes every image from every host's daemon.
func (fl *faultLab) clean(t *testing.T) {
	t.Helper()
	for _, h := range fl.lab.Hosts() {
		if _, err := fl.lab.Exec(context.Background(), h, "sh", "-c",
			"docker image ls -aq --no-trunc | sort -u | xargs -r docker image rm -f >/dev/null; docker image prune -af >/dev/null"); err != nil {
			t.Fatalf("clean %s: %v", h, err)
		}
	}
}

// daemonImages lists every image (dangling and intermediate ones too) of
// every host's daemon as "repo:tag id".
func (fl *faultLab) daemonImages(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, h := range fl.lab.Hosts() {
		b, err := fl.lab.Exec(context.Background(), h, "docker", "image", "ls", "-a", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
		if err != nil {
			t.Fatalf("list images on %s: %v", h, err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		sort.Strings(lines)
		out[h] = lines
	}
	return out
}

// assertDaemonsAsBefore: a host that did not end done holds exactly the
// images it had before the job; one that did gained only the job's image.
func (fl *faultLab) assertDaemonsAsBefore(t *testing.T, rep *orchestrator.Report, before map[string][]string) {
	t.Helper()
	after := fl.daemonImages(t)
	for _, h := range rep.Hosts {
		extra := without(after[h.Host], before[h.Host])
		if h.State == orchestrator.HostDone {
			if len(extra) != 1 || !strings.HasPrefix(extra[0], faultTag+" ") {
				t.Errorf("%s (done): daemon gained %v, want only %s", h.Host, extra, faultTag)
			}
			continue
		}
		if len(extra) > 0 || len(without(before[h.Host], after[h.Host])) > 0 {
			t.Errorf("%s (%s): daemon images %v, before the job %v", h.Host, h.State, after[h.Host], before[h.Host])
		}
	}
}

func without(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// waitBytes waits until host (any host when "") has at least n bytes.
// hostShare is the part of the image a host has received, from its last
// progress event.
func (j *job) hostShare(host string) float64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.events) - 1; i >= 0; i-- {
		if e := j.events[i]; e.Kind == orchestrator.EventHostProgress && e.Host == host && e.Progress.Total > 0 {
			return float64(e.Progress.Done) / float64(e.Progress.Total)
		}
	}
	return 0
}

func waitBytes(t *testing.T, j *job, host string, n int64) {
	t.Helper()
	j.waitFor(t, 2*time.Minute, func(e orchestrator.Event) bool {
		return e.Kind == orchestrator.EventHostProgress && (host == "" || e.Host == host) && e.Progress.Done-skipped(e.Progress) >= n
	})
}

func skipped(p *orchestrator.HostProgress) int64 {
	var n int64
	for _, l := range p.Layers {
		if l.Skipped {
			n += l.Total
		}
	}
	return n
}

// nodePIDs finds the processes of a job running on one host: their
// executable is in the job's dir and they live in the host's network
// namespace (lab hosts share the machine's pid namespace).
func nodePIDs(t testing.TB, lab *testbed.Lab, host, jobID string) []int {
	t.Helper()
	pids, err := findNodePIDs(lab, host, jobID)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func findNodePIDs(lab *testbed.Lab, host, jobID string) ([]int, error) {
	return hostPIDs(lab, host, func(pid int) bool {
		// The node runs from the host's node cache or its work dir; its
		// command line names its job.
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return err == nil && strings.Contains(" "+strings.ReplaceAll(string(cmdline), "\x00", " ")+" ", " "+jobspec.NodeJobFlag+" "+jobID+" ")
	})
}

// sshSessionPIDs finds the sshd processes that serve connections on host:
// every sshd in the host's network namespace but its listener.
func sshSessionPIDs(t testing.TB, lab *testbed.Lab, host string) []int {
	t.Helper()
	m, err := lab.Machine(host)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := hostPIDs(lab, host, func(pid int) bool {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return err == nil && pid != m.SSHD.Pid && strings.TrimSpace(string(comm)) == "sshd"
	})
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// hostPIDs finds the processes that live in host's network namespace (lab
// hosts share the machine's pid namespace) and that keep accepts.
func hostPIDs(lab *testbed.Lab, host string, keep func(pid int) bool) ([]int, error) {
	m, err := lab.Machine(host)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(m.NetnsPath(), &st); err != nil {
		return nil, fmt.Errorf("netns of %s: %w", host, err)
	}
	netns := fmt.Sprintf("net:[%d]", st.Ino)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !keep(pid) {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err == nil && ns == netns {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// running says whether pid is a live process (not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return rest != "" && rest[0] != 'Z' && rest[0] != 'X'
}

// jobDir is the job's dir on a host// jobDir is the job's dir on a host as seen from outside the lab (a
// host's /tmp is its machine dir's tmp).
func jobDir(lab *testbed.Lab, host, jobID string) string {
	m, _ := lab.Machine(host)
	return filepath.Join(m.Dir, "tmp", "layercast-"+jobID)
}

func dirExists(lab *testbed.Lab, host, jobID string) bool {
	_, err := os.Stat(jobDir(lab, host, jobID))
	return err == nil
}

// waitGone waits until the job has neither a process nor a dir on host.
func waitGone(lab *testbed.Lab, host, jobID string, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		if pids, err := findNodePIDs(lab, host, jobID); err == nil && len(pids) == 0 && !dirExists(lab, host, jobID) {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func roundAll(m map[string]time.Duration) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v.Round(100 * time.Millisecond).String()
	}
	return out
}

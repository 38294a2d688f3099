package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// The hardening of issue 13 on one lab: a registry whose tag points at
// another image than the bastion's, a Docker daemon that freezes during
// the check and during the import, a /tmp mounted noexec.
func TestHardening(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3, Rate: "100mbit", Registry: true})
	clean := func(t *testing.T) {
		t.Helper()
		for _, h := range lab.Hosts() {
			if _, err := lab.Exec(context.Background(), h, "sh", "-c",
				"docker image ls -aq --no-trunc | sort -u | xargs -r docker image rm -f >/dev/null; docker image prune -af >/dev/null"); err != nil {
				t.Fatalf("clean %s: %v", h, err)
			}
		}
	}

	t.Run("registry tag points at another image than the bastion's", func(t *testing.T) {
		mine := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/reg:v1", Size: 12 * mb, Layers: 2})
		other := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/reg-other:v1", Size: 12 * mb, Layers: 2})
		if mine.ID == other.ID {
			t.Fatal("the two images are one")
		}
		ref := mine.RegistryRef
		// The registry's ref becomes the other image; the bastion's ref
		// stays its own.
		for _, args := range [][]string{
			{"docker", "tag", other.RegistryRef, ref},
			{"docker", "push", ref},
			{"docker", "tag", "lab/reg:v1", ref},
		} {
			if out, err := lab.Exec(context.Background(), "bastion", args...); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
		}
		clean(t)
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), "--mode", "registry", ref)
		if code != 1 {
			t.Errorf("exit %d, want 1; stderr:\n%s", code, j.stderr.String())
		}
		for _, h := range rep.Hosts {
			t.Logf("%s: %s: %s", h.Host, h.State, h.Error)
			if h.State != orchestrator.HostFailed || !strings.Contains(h.Error, "does not match") || !strings.Contains(h.Error, other.ID) || !strings.Contains(h.Error, mine.ID) {
				t.Errorf("%s: %s %q; want failed, naming the registry's image and the bastion's", h.Host, h.State, h.Error)
			}
			if got := imageOn(t, lab, h.Host, ref); got != "" {
				t.Errorf("%s holds %s as %s after a mismatch", h.Host, got, ref)
			}
		}
		assertNothingLeft(t, lab, rep)

		// Without a copy on the bastion nothing can be checked: the hosts
		// take what the registry serves, and the report says so.
		if out, err := lab.Exec(context.Background(), "bastion", "docker", "image", "rm", ref); err != nil {
			t.Fatalf("untag on the bastion: %v\n%s", err, out)
		}
		rep, code, j = runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), "--mode", "registry", ref)
		if code != 0 {
			t.Errorf("without a copy on the bastion: exit %d; stderr:\n%s", code, j.stderr.String())
		}
		t.Logf("without a copy on the bastion: %q", rep.Unverified)
		if !strings.Contains(rep.Unverified, "no copy of "+ref) {
			t.Errorf("report's unverified: %q", rep.Unverified)
		}
		for _, h := range rep.Hosts {
			if !h.Unverified || h.State != orchestrator.HostDone || imageOn(t, lab, h.Host, ref) != other.ID {
				t.Errorf("%s: %+v; want done, unverified, with the registry's image", h.Host, h)
			}
		}
	})

	frozen := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/frozen:v1", Size: 40 * mb, Layers: 1})
	// freeze stops a host's dockerd as a hung daemon would, until the
	// test ends.
	freeze := func(t *testing.T, host string) {
		t.Helper()
		m, err := lab.Machine(host)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(m.Docker.Pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("freeze dockerd of %s (pid %d): %v", host, m.Docker.Pid, err)
		}
		t.Logf("dockerd of %s (pid %d) frozen", host, m.Docker.Pid)
		t.Cleanup(func() { _ = syscall.Kill(m.Docker.Pid, syscall.SIGCONT) })
	}
	// frozenJob runs a job with host's daemon frozen (by during), and
	// checks that host fails with reason within deadline, that the others
	// finish, and that nothing of the job is left once the daemon runs
	// again. It returns how long the host took past its phase's start.
	frozenJob := func(t *testing.T, host, phase, reason string, deadline time.Duration, during func(*job), args ...string) {
		t.Helper()
		clean(t)
		j := startJob(t, lab, append(append([]string{"-i", lab.InventoryPath()}, args...), "lab/frozen:v1")...)
		t.Cleanup(func() {
			if t.Failed() {
				j.mu.Lock()
				defer j.mu.Unlock()
				for _, e := range j.events {
					if e.Kind != orchestrator.EventHostProgress && e.Kind != orchestrator.EventSeeder {
						t.Logf("%s %s %s %s %s", e.Time.Format("15:04:05.000"), e.Kind, e.Host, e.State, e.Message)
					}
				}
			}
		})
		during(j)
		rep, code := j.wait(t, 5*time.Minute)
		if rep == nil {
			t.Fatalf("no report (exit %d); stderr:\n%s", code, j.stderr.String())
		}
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		var entered, failed time.Time
		j.mu.Lock()
		for _, e := range j.events {
			if e.Host != host {
				continue
			}
			switch {
			case e.Kind == orchestrator.EventHostState && e.State == orchestrator.HostState(phase) && entered.IsZero():
				entered = e.Time
			case e.Kind == orchestrator.EventHostProgress && phase == string(orchestrator.HostImporting) && e.Progress.Total > 0 && e.Progress.Done >= e.Progress.Total && entered.IsZero():
				entered = e.Time // every byte in: importing, whatever the node says
			case e.Kind == orchestrator.EventHostState && e.State == orchestrator.HostFailed:
				failed = e.Time
			}
		}
		j.mu.Unlock()
		res := hostResults(rep)
		took := failed.Sub(entered)
		t.Logf("%s: %s after %s in %s (deadline %s): %s", host, res[host].State, took.Round(100*time.Millisecond), phase, deadline, res[host].Error)
		if r := res[host]; r.State != orchestrator.HostFailed || !strings.Contains(r.Error, reason) {
			t.Errorf("%s: %s %q; want failed: %s", host, r.State, r.Error, reason)
		}
		if entered.IsZero() || failed.IsZero() || took < deadline || took > deadline+deadline/4+3*time.Second {
			t.Errorf("%s failed %s after it entered %s; want within the deadline of %s (and its watchdog's tick)", host, took, phase, deadline)
		}
		for _, h := range lab.Hosts() {
			if h != host && (res[h].State != orchestrator.HostDone || imageOn(t, lab, h, "lab/frozen:v1") != frozen.ID) {
				t.Errorf("%s: %+v; want done with the image", h, res[h])
			}
		}
		m, _ := lab.Machine(host)
		_ = syscall.Kill(m.Docker.Pid, syscall.SIGCONT)
		if took, ok := waitGone(lab, host, rep.JobID, time.Minute); !ok {
			t.Errorf("%s: the job's node or dir still there %s after the daemon ran again", host, took)
		}
		assertNothingLeft(t, lab, rep)
		t.Logf("%s after the daemon ran again: images %q", host, daemonTags(t, lab, host))
	}

	t.Run("dockerd frozen during check", func(t *testing.T) {
		frozenJob(t, "h02", string(orchestrator.HostChecking), "checking took more than 20s", 20*time.Second, func(*job) {
			freeze(t, "h02")
		}, "--check-timeout", "20s")
	})

	t.Run("dockerd frozen during import", func(t *testing.T) {
		// A one-layer image touches the daemon only before and after its
		// download: frozen while h03 downloads, its daemon hangs the
		// import. A slower link keeps h03 downloading long enough.
		if err := lab.SlowLink(context.Background(), "h03", 10); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lab.HealLink(context.Background(), "h03") })
		frozenJob(t, "h03", string(orchestrator.HostImporting), "importing took more than 20s", 20*time.Second, func(j *job) {
			j.waitFor(t, 2*time.Minute, func(e orchestrator.Event) bool {
				return e.Kind == orchestrator.EventHostState && e.Host == "h03" && e.State == orchestrator.HostDownloading
			})
			freeze(t, "h03")
		}, "--import-timeout", "20s")
	})

	t.Run("tmp mounted noexec", func(t *testing.T) {
		// Without a node cache the node runs from its work dir: /tmp
		// cannot hold it, /var/tmp can.
		if out, err := lab.Exec(context.Background(), "h01", "sh", "-c", "mount -t tmpfs -o noexec,size=64m,mode=1777 lab-noexec /tmp"); err != nil {
			t.Fatalf("mount a noexec /tmp on h01: %v\n%s", err, out)
		}
		t.Cleanup(func() {
			_, _ = lab.Exec(context.Background(), "h01", "sh", "-c", "n=0; while grep -q ' lab-noexec ' /proc/self/mounts && [ $n -lt 10 ]; do umount -l /tmp; n=$((n+1)); done")
		})
		clean(t)
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), "--no-node-cache", "lab/frozen:v1")
		if code != 0 {
			t.Fatalf("exit %d; %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
		}
		if imageOn(t, lab, "h01", "lab/frozen:v1") != frozen.ID {
			t.Errorf("h01 has no image")
		}
		out, _ := lab.Exec(context.Background(), "h01", "sh", "-c", "ls -d /var/tmp/layercast-* /tmp/layercast-* 2>/dev/null; true")
		if left := strings.TrimSpace(string(out)); left != "" {
			t.Errorf("h01 keeps work dirs: %s", left)
		}
		assertNothingLeft(t, lab, rep)
	})
}

// daemonTags lists the tags a host's daemon holds.
func daemonTags(t *testing.T, lab *testbed.Lab, host string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := lab.Exec(ctx, host, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
	return strings.Join(strings.Fields(string(out)), " ")
}

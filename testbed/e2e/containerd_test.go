package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// ctr runs ctr in the kubelet's namespace on a lab host.
func ctr(t testing.TB, lab *testbed.Lab, host string, args ...string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), host, append([]string{"ctr", "-n", "k8s.io"}, args...)...)
	if err != nil {
		t.Fatalf("ctr %v on %s: %v: %s", args, host, err, out)
	}
	return string(out)
}

// TestJob_MixedDockerAndContainerdFleet is issue 15's testbed "must show":
// one job to a fleet of half Docker hosts, half containerd-only hosts (as
// Kubernetes nodes run). Every host ends with the image: the Docker hosts
// under its tag, the containerd hosts in the k8s.io namespace with the
// job's config digest, unpacked, so that `ctr run` starts it without a pull.
// Containerd hosts that hold the base skip it.
func TestJob_MixedDockerAndContainerdFleet(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 4, Containerd: 2, Rate: "100mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v1", Size: 60 * mb, Layers: 4, BaseSize: 30 * mb, BaseLayers: 2})
	if err := lab.Preload(context.Background(), "lab/app:v1", "h04"); err != nil {
		t.Fatal(err)
	}
	rep, code, j := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v1")
	if code != 0 {
		t.Fatalf("exit %d; report %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
	}
	byHost := hostResults(rep)
	for _, h := range []string{"h01", "h02"} {
		if r := byHost[h]; r.Runtime != "docker" || imageOn(t, lab, h, "lab/app:v1") != img.ID {
			t.Errorf("%s: %+v; want the image in docker", h, r)
		}
	}
	for _, h := range []string{"h03", "h04"} {
		r := byHost[h]
		if r.State != orchestrator.HostDone || r.Runtime != "containerd" || r.ImageID != img.ID {
			t.Errorf("%s: %+v; want the image in containerd", h, r)
		}
		if list := ctr(t, lab, h, "images", "ls", "-q"); !strings.Contains(list, "docker.io/lab/app:v1") {
			t.Errorf("%s: containerd has no docker.io/lab/app:v1:\n%s", h, list)
		}
		out := ctr(t, lab, h, "run", "--rm", "docker.io/lab/app:v1", "lc-e2e-"+h)
		if out != testbed.HelloMessage {
			t.Errorf("%s: ctr run printed %q, want %q", h, out, testbed.HelloMessage)
		}
		if leases := strings.TrimSpace(ctr(t, lab, h, "leases", "ls", "-q")); strings.Contains(leases, "layercast") {
			t.Errorf("%s: leases left: %s", h, leases)
		}
	}
	// h04 held the base: it received at most the layers above it, and
	// said it skipped two.
	if r := byHost["h04"]; r.LayersSkipped != 2 || float64(r.FromPeers+r.FromSeeder) > 1.05*30*mb {
		t.Errorf("h04 with the base: %+v; want 2 layers skipped and ≤ 31.5 MB received", r)
	}
	assertNothingLeft(t, lab, rep)
}

// TestJob_ContainerdStoppedMidImportLeavesNothing: containerd stops on a
// host while its node imports. The host fails alone. Its node cannot roll
// back while containerd is away, so the job's lease (and what it holds)
// stays; the next job's node finds that the job is over and drops it. In
// the end the host holds no image, lease or snapshot of the failed job.
func TestJob_ContainerdStoppedMidImportLeavesNothing(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3, Containerd: 1, Rate: "30mbit"})
	// A small first layer: it is complete, and its import under way, while
	// the three large ones still download (the node fetches every layer at
	// once, so equal layers would all end together).
	makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v1", Size: 60 * mb, Layers: 4, BaseSize: 3 * mb, BaseLayers: 1})
	makeImage(t, lab, testbed.ImageSpec{Tag: "lab/other:v1", Size: 10 * mb, Layers: 1})

	j := startJob(t, lab, "-i", lab.InventoryPath(), "lab/app:v1")
	j.waitFor(t, 3*time.Minute, func(e orchestrator.Event) bool {
		// A layer of h03 is complete (its import is running or about to)
		// while later ones still download.
		if e.Kind != orchestrator.EventHostProgress || e.Host != "h03" || e.Progress == nil || len(e.Progress.Layers) == 0 {
			return false
		}
		l := e.Progress.Layers[0]
		return l.Done == l.Total && e.Progress.Done < e.Progress.Total
	})
	if err := lab.StopContainerd(context.Background(), "h03"); err != nil {
		t.Fatal(err)
	}
	rep, code := j.wait(t, 5*time.Minute)
	if err := lab.StartContainerd(context.Background(), "h03"); err != nil {
		t.Fatal(err)
	}
	if code != 1 || rep == nil {
		t.Fatalf("exit %d, report %+v; want 1 with h03 failed", code, rep)
	}
	byHost := hostResults(rep)
	if r := byHost["h03"]; r.State != orchestrator.HostFailed || r.Error == "" {
		t.Errorf("h03: %+v; want failed with a reason", r)
	}
	for _, h := range []string{"h01", "h02"} {
		if r := byHost[h]; r.State != orchestrator.HostDone {
			t.Errorf("%s: %+v", h, r)
		}
	}
	assertNothingLeft(t, lab, rep)
	t.Logf("h03 after the failed job, containerd back: leases %q", ctr(t, lab, "h03", "leases", "ls", "-q"))

	// The next job (another image) sweeps what the failed one left.
	rep2, code, j2 := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "--hosts", "h03", "lab/other:v1")
	if code != 0 {
		t.Fatalf("next job: exit %d; %+v; stderr:\n%s", code, rep2.Hosts, j2.stderr.String())
	}
	images := ctr(t, lab, "h03", "images", "ls", "-q")
	leases := ctr(t, lab, "h03", "leases", "ls", "-q")
	if strings.Contains(images, "lab/app") || strings.Contains(leases, "layercast") {
		t.Errorf("h03 after the next job: images %q, leases %q; want nothing of the failed job", images, leases)
	}
	// Every committed snapshot left belongs to lab/other:v1 (one layer).
	var committed []string
	for _, l := range strings.Split(ctr(t, lab, "h03", "snapshots", "ls"), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[len(f)-1] == "Committed" {
			committed = append(committed, f[0])
		}
	}
	if len(committed) != 1 {
		t.Errorf("h03 holds %d committed snapshots %v, want only lab/other:v1's one", len(committed), committed)
	}
	assertNothingLeft(t, lab, rep2)
}

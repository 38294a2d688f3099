package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// TestJobs_SideBySideOnTheSameHosts is issue 13's first "must show": two
// jobs with different images to the same 3 hosts, started 3 s apart (two
// CI pipelines). Neither takes the other's work dir, node or temporary
// images for an ended job's: both exit 0, every host has both images, and
// neither leaves anything behind.
func TestJobs_SideBySideOnTheSameHosts(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3, Rate: "100mbit"})
	a := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v1", Size: 120 * mb, Layers: 4})
	b := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/other:v1", Size: 120 * mb, Layers: 4})

	first := startJob(t, lab, "-i", lab.InventoryPath(), "lab/app:v1")
	time.Sleep(3 * time.Second)
	second := startJob(t, lab, "-i", lab.InventoryPath(), "--cache-dir", lab.Dir()+"/cache2", "lab/other:v1")
	repA, codeA := first.wait(t, 5*time.Minute)
	repB, codeB := second.wait(t, 5*time.Minute)
	for _, r := range []struct {
		name string
		rep  *orchestrator.Report
		code int
		j    *job
	}{{"first", repA, codeA, first}, {"second", repB, codeB, second}} {
		if r.code != 0 || r.rep == nil {
			t.Fatalf("%s job: exit %d, report %+v; stderr:\n%s", r.name, r.code, r.rep, r.j.stderr.String())
		}
		for _, h := range r.rep.Hosts {
			if h.State != orchestrator.HostDone {
				t.Errorf("%s job, %s: %s %s", r.name, h.Host, h.State, h.Error)
			}
		}
	}
	for _, h := range lab.Hosts() {
		if got := imageOn(t, lab, h, "lab/app:v1"); got != a.ID {
			t.Errorf("%s: lab/app:v1 is %q, want %s", h, got, a.ID)
		}
		if got := imageOn(t, lab, h, "lab/other:v1"); got != b.ID {
			t.Errorf("%s: lab/other:v1 is %q, want %s", h, got, b.ID)
		}
		out, err := lab.Exec(context.Background(), h, "sh", "-c", "docker image ls --format '{{.Repository}}:{{.Tag}}' | grep layercast-tmp || true")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: temporary images left: %q %v", h, out, err)
		}
	}
	assertNothingLeft(t, lab, repA)
	assertNothingLeft(t, lab, repB)
}

// TestJob_NodeBinaryIsHandedOnAndKept is issue 11's node binary: the
// bastion uploads it to the first three hosts, the others fetch it from
// hosts that run it; a second job finds it in every host's node cache and
// sends nothing; plan shows it; layercast clean removes it.
func TestJob_NodeBinaryIsHandedOnAndKept(t *testing.T) {
	bin := labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 6, Rate: "100mbit"})
	makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v1", Size: 20 * mb, Layers: 2})

	rep, code, j := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v1")
	if code != 0 {
		t.Fatalf("exit %d; report %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
	}
	nb := rep.NodeBinary
	t.Logf("first job: node binary %+v", nb)
	if nb.FromBastion > 3 || nb.FromPeers < 3 || nb.FromCache != 0 {
		t.Errorf("node binary %+v: want 3 uploads from the bastion and the rest from other hosts", nb)
	}
	assertNothingLeft(t, lab, rep)

	removeImages(t, lab, "lab/app:v1")
	// Dated a month back, the cached files are marked used again by the
	// second job's node (jobspec.Spec.MarkUsed), which keeps them from
	// the cache's pruning.
	const cached = `"$HOME"/.cache/layercast/layercast-node-*`
	for _, h := range lab.Hosts() {
		if out, err := lab.Exec(context.Background(), h, "sh", "-c", "touch -d '30 days ago' "+cached); err != nil {
			t.Fatalf("%s: date the node cache back: %v %s", h, err, out)
		}
	}
	rep, code, j = runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v1")
	if code != 0 {
		t.Fatalf("second job: exit %d; report %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
	}
	if nb := rep.NodeBinary; nb.FromCache != 6 || nb.BastionBytes != 0 {
		t.Errorf("second job: node binary %+v, want every host from its cache", nb)
	}
	assertNothingLeft(t, lab, rep)
	for _, h := range lab.Hosts() {
		// Files in the cache not modified within the last day: none.
		out, err := lab.Exec(context.Background(), h, "sh", "-c", "find "+cached+" -mtime +0")
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: the second job did not mark its cached node binary used: %q %v", h, out, err)
		}
		// The touch moved the binary's status-change time; the node
		// renewed its stamp, so the next job checks it with one stat.
		script := `for s in ` + cached + jobspec.CacheStampSuffix + `; do [ "$(stat -c '` + jobspec.CacheStampFormat + `' -- "${s%` + jobspec.CacheStampSuffix + `}")" = "$(cat -- "$s")" ] && echo renewed; done`
		if out, err := lab.Exec(context.Background(), h, "sh", "-c", script); err != nil || strings.TrimSpace(string(out)) != "renewed" {
			t.Errorf("%s: the cached node binary's stamp after the second job: %q %v, want one stamp that matches", h, out, err)
		}
	}

	out, err := lab.Exec(context.Background(), "bastion", bin, "plan", "-i", lab.InventoryPath(), "--cache-dir", lab.Dir()+"/cache", "lab/app:v1")
	if err != nil || strings.Count(string(out), " cached ") != 6 {
		t.Errorf("plan does not show the cached node binary on every host (%v):\n%s", err, out)
	}
	out, err = lab.Exec(context.Background(), "bastion", bin, "clean", "-i", lab.InventoryPath())
	if err != nil || strings.Count(string(out), "removed node binaries") != 6 {
		t.Errorf("clean (%v):\n%s", err, out)
	}
	for _, h := range lab.Hosts() {
		out, err := lab.Exec(context.Background(), h, "sh", "-c", `ls -A "$HOME/.cache/layercast" 2>/dev/null; true`)
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s: node cache after clean: %q %v", h, out, err)
		}
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// TestJob_LayerAlteredAfterVerifyFailsTheImport is issue 11's proof that
// the node needs no sha256 pass of its own over a layer file: a file
// altered on the host after every one of its pieces passed its SHA-1
// check, before the import reads it, fails the import in the runtime's
// own checks, and the host ends with no image, tag, temporary image,
// lease, snapshot or layer of the job. Docker's classic store (docker
// load checks each layer's diff ID against the config's) and containerd
// (its content store checks the blob's digest on commit, the node the
// applied diff ID) each get the layers as plain tars and gzipped on the
// wire.
//
// The image's top layer is small and its base large, so that the top
// layer's file is complete while the import still waits for the base:
// the test alters it then, from outside the host (its /tmp is a
// directory of the machine), with no hook in the node.
func TestJob_LayerAlteredAfterVerifyFailsTheImport(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 2, Containerd: 1, Rate: "30mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/alter:v1", Size: 31 * mb, Layers: 2, BaseSize: 30 * mb, BaseLayers: 1})
	for _, c := range []struct {
		host, runtime, compress string
		// refusal is what the host's error must say: docker load's
		// refusal, or containerd's commit of the blob refused.
		refusal string
	}{
		{"h01", "docker", "none", "load image: invalid diffID for layer 1"},
		{"h01", "docker", "gzip", "load image: "},
		{"h02", "containerd", "none", "unpack layer 2 of 2: commit %s: unexpected commit digest"},
		{"h02", "containerd", "gzip", "unpack layer 2 of 2: commit %s: unexpected commit digest"},
	} {
		t.Run(c.runtime+"/"+c.compress, func(t *testing.T) {
			j := startJob(t, lab, "-i", lab.InventoryPath(), "--hosts", c.host, "--source", "daemon", "--compress", c.compress, img.Spec.Tag)
			e := j.waitFor(t, 3*time.Minute, func(e orchestrator.Event) bool {
				if e.Kind != orchestrator.EventHostProgress || e.Host != c.host || e.Progress == nil || len(e.Progress.Layers) != 2 {
					return false
				}
				base, top := e.Progress.Layers[0], e.Progress.Layers[1]
				return top.Done == top.Total && base.Done < base.Total
			})
			top := e.Progress.Layers[1]
			if plain := top.Digest == img.DiffIDs[1]; plain != (c.compress == "none") {
				t.Fatalf("top layer travels as %s (diff ID %s): compressed = %v, want --compress %s", top.Digest, img.DiffIDs[1], !plain, c.compress)
			}
			alterLayerFile(t, lab, c.host, top.Digest, top.Total)

			rep, code := j.wait(t, 3*time.Minute)
			if code != 1 || rep == nil {
				t.Fatalf("exit %d, report %+v; want 1 with %s failed; stderr:\n%s", code, rep, c.host, j.stderr.String())
			}
			r := hostResults(rep)[c.host]
			t.Logf("%s: %s", c.host, r.Error)
			refusal := c.refusal
			if strings.Contains(refusal, "%s") {
				refusal = fmt.Sprintf(refusal, top.Digest)
			}
			if r.State != orchestrator.HostFailed || !strings.Contains(r.Error, refusal) {
				t.Errorf("%s: %+v; want failed with %q", c.host, r, refusal)
			}
			if c.runtime == "docker" {
				assertNoDockerImage(t, lab, c.host, img)
			} else {
				assertNoContainerdImage(t, lab, c.host, img, e.Progress.Layers[0].Digest, top.Digest)
			}
			assertNothingLeft(t, lab, rep)
		})
	}
}

// alterLayerFile flips 4 KiB in the middle of the host's file of the layer
// travelling as digest, after checking that the file is complete.
func alterLayerFile(t *testing.T, lab *testbed.Lab, host, digest string, size int64) {
	t.Helper()
	m, err := lab.Machine(host)
	if err != nil {
		t.Fatal(err)
	}
	pattern := filepath.Join(m.Dir, "tmp", jobspec.WorkDirNamePrefix+"*", "layers", strings.TrimPrefix(digest, "sha256:"))
	paths, err := filepath.Glob(pattern)
	if err != nil || len(paths) != 1 {
		t.Fatalf("layer file %s: %v %v", pattern, paths, err)
	}
	f, err := os.OpenFile(paths[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != size {
		t.Fatalf("layer file %s: %v, want %d bytes", paths[0], err, size)
	}
	b := make([]byte, min(4096, size))
	off := (size - int64(len(b))) / 2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] ^= 0xff
	}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("altered %d bytes at %d of %s", len(b), off, paths[0])
}

// assertNoDockerImage fails when the host's daemon holds any image or tag
// (a job's temporary images included) or a layer of img.
func assertNoDockerImage(t *testing.T, lab *testbed.Lab, host string, img *testbed.Image) {
	t.Helper()
	out, err := lab.Exec(t.Context(), host, "docker", "image", "ls", "-a", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
	if err != nil {
		t.Fatalf("docker image ls on %s: %v", host, err)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("%s: images left in docker:\n%s", host, s)
	}
	for _, chain := range jobspec.ChainIDs(img.DiffIDs) {
		dir := "/var/lib/docker/image/*/layerdb/sha256/" + strings.TrimPrefix(chain, "sha256:")
		if out, err := lab.Exec(t.Context(), host, "sh", "-c", "ls -d "+dir+" 2>/dev/null"); err == nil {
			t.Errorf("%s: layer left in docker's layer store: %s", host, out)
		}
	}
}

// assertNoContainerdImage fails when the host's containerd holds an image,
// a layercast lease, a committed snapshot, or a blob of the job (layers as
// they travelled, config).
func assertNoContainerdImage(t *testing.T, lab *testbed.Lab, host string, img *testbed.Image, digests ...string) {
	t.Helper()
	if s := strings.TrimSpace(ctr(t, lab, host, "images", "ls", "-q")); s != "" {
		t.Errorf("%s: images left in containerd:\n%s", host, s)
	}
	if s := ctr(t, lab, host, "leases", "ls", "-q"); strings.Contains(s, "layercast") {
		t.Errorf("%s: leases left: %s", host, s)
	}
	if s := ctr(t, lab, host, "snapshots", "ls"); strings.Contains(s, "Committed") {
		t.Errorf("%s: snapshots left:\n%s", host, s)
	}
	content := ctr(t, lab, host, "content", "ls", "-q")
	for _, d := range append(digests, img.ID, img.DiffIDs[0], img.DiffIDs[1]) {
		if strings.Contains(content, d) {
			t.Errorf("%s: content store holds %s", host, d)
		}
	}
	if t.Failed() {
		t.Logf("%s content store:\n%s", host, content)
	}
}

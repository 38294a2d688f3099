package main_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/containerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
	"github.com/layercast/layercast/testbed"
)

// TestBinary_ContainerdImageImportedByCtrIsNamedChecksAndRuns: containerd
// holds a lab image that ctr imported (its own manifest and labels) under
// another name; the node finds every layer there, names the image for the
// job, checks it, and ctr runs it.
func TestBinary_ContainerdImageImportedByCtrIsNamedChecksAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	d := containerdtest.Start(t)
	var archive bytes.Buffer
	info, err := testbed.WriteImage(&archive, testbed.ImageSpec{Tag: "lab/old:1", Size: 1 << 20, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	imp := exec.Command("ctr", "-a", d.Address, "-n", "k8s.io", "images", "import", "-")
	imp.Stdin = bytes.NewReader(archive.Bytes())
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("ctr import: %v: %s", err, out)
	}

	spec := specFromArchive(t, archive.Bytes(), "lab/app:1")
	if spec.ImageID != info.ID {
		t.Fatalf("config %s, want %s", spec.ImageID, info.ID)
	}
	spec.Runtime, spec.ContainerdAddress = jobspec.RuntimeContainerd, "unix://"+d.Address
	p := startNode(t, spec)
	p.until(func(ev jobspec.Event) bool {
		return ev.Kind == jobspec.EventLog && strings.HasPrefix(ev.Message, "containerd has 2 of 2 layers")
	})
	done := p.until(func(ev jobspec.Event) bool { return ev.State == jobspec.StateDone })
	if done.ImageID != spec.ImageID {
		t.Errorf("done with %s", done.ImageID)
	}
	fmt.Fprintln(p.stdin, `{"kind":"stop"}`)
	p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventExit })
	if code := p.wait(); code != node.ExitOK {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	p.assertDirGone()
	if got := d.Lines("k8s.io", "images", "ls", "-q"); !slices.Contains(got, "docker.io/lab/app:1") || !slices.Contains(got, "docker.io/lab/old:1") {
		t.Errorf("images %v", got)
	}
	if got := d.Lines("k8s.io", "leases", "ls", "-q"); len(got) != 0 {
		t.Errorf("leases left: %v", got)
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("no runc to run the image with")
	}
	if out := d.Ctr("k8s.io", "run", "--rm", "docker.io/lab/app:1", "layercast-bin-run"); !strings.Contains(out, strings.TrimSpace(testbed.HelloMessage)) {
		t.Errorf("ctr run printed %q", out)
	}
}

// specFromArchive is the p2p spec of the docker-save archive b, tagged ref.
func specFromArchive(t *testing.T, b []byte, ref string) *jobspec.Spec {
	t.Helper()
	entries := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if entries[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	config := entries[m[0].Config]
	diffIDs, err := dockerimage.DiffIDs(config)
	if err != nil {
		t.Fatal(err)
	}
	chains := jobspec.ChainIDs(diffIDs)
	spec := &jobspec.Spec{
		Version: jobspec.Version, JobID: "job1", Host: "h01", Image: ref,
		ImageID: dockerimage.Digest(config), Config: config,
		Announce: "http://127.0.0.1:1/announce?token=t", WorkDir: filepath.Join(t.TempDir(), "unused"),
	}
	for i, name := range m[0].Layers {
		spec.Layers = append(spec.Layers, jobspec.Layer{
			DiffID: diffIDs[i], ChainID: chains[i], Digest: diffIDs[i], Size: int64(len(entries[name])),
			MediaType: "tar", Torrent: []byte("d4:infod6:lengthi1eee"),
		})
	}
	return spec
}

func TestBinary_NoContainerdFailsWithAClearMessage(t *testing.T) {
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	spec := node.SpecFor(img, "lab/app:1", "")
	spec.Runtime, spec.ContainerdAddress = jobspec.RuntimeContainerd, "/nonexistent/containerd.sock"
	p := startNode(t, spec)
	ev := p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventError })
	if !strings.HasPrefix(ev.Message, "connect to containerd: reach containerd at /nonexistent/containerd.sock (is it running, and may this user use it?)") {
		t.Errorf("error %q", ev.Message)
	}
	if code := p.wait(); code != node.ExitFailed {
		t.Errorf("exit %d", code)
	}
	p.assertDirGone()
}

package node_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/containerdimage"
	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/containerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
)

func startContainerd(t *testing.T) *containerdtest.Daemon {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	return containerdtest.Start(t)
}

// containerdSpec is SpecFor with runtime containerd at d, layers typed by
// their compression.
func containerdSpec(img dockerimage.TestImage, ref, dir string, d *containerdtest.Daemon) *jobspec.Spec {
	s := node.SpecFor(img, ref, dir)
	s.Runtime, s.ContainerdAddress = jobspec.RuntimeContainerd, d.Address
	for i := range s.Layers {
		if s.Layers[i].Digest != s.Layers[i].DiffID {
			s.Layers[i].MediaType = "tar+gzip"
		}
	}
	return s
}

// containerdRun runs a node importing into d with a fake swarm.
func containerdRun(t *testing.T, d *containerdtest.Daemon, spec *jobspec.Spec, l *node.FakeLeecher) *run {
	t.Helper()
	return start(t, setup{spec: spec, leecher: l, containerd: connectContainerd})
}

func connectContainerd(ctx context.Context, spec *jobspec.Spec) (node.Runtime, error) {
	c, err := containerdimage.Connect(ctx, containerdimage.Config{Address: spec.ContainerdAddress, Namespace: spec.ContainerdNamespace})
	if err != nil {
		return nil, err
	}
	return node.ContainerdRuntime(c), nil
}

func TestNodeContainerd_FailureBeforeTheImportLeavesNoLease(t *testing.T) {
	d := startContainerd(t)
	base := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(50, "a", 1000)}, false, "base")
	r := containerdRun(t, d, containerdSpec(base, "lab/base:1", workDir(t), d), &node.FakeLeecher{Files: files(base)})
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Fatalf("base job: exit %d: %s", code, r.summary())
	}
	// The check leases the base's snapshot; the swarm then fails.
	app := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(50, "a", 1000), dockerimage.LayerTar(51, "b", 1000)}, false, "app")
	r = start(t, setup{spec: containerdSpec(app, "lab/app:1", workDir(t), d), containerd: connectContainerd, swarmErr: errors.New("no tracker")})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if got := d.Lines("k8s.io", "leases", "ls", "-q"); len(got) != 0 {
		t.Errorf("leases left: %v", got)
	}
	if got := d.Lines("k8s.io", "images", "ls", "-q"); !slices.Equal(got, []string{"docker.io/lab/base:1"}) {
		t.Errorf("images %v, want the base only", got)
	}
}

func TestNodeContainerd_ImportsOnTopOfThePresentBaseAsLayersArrive(t *testing.T) {
	d := startContainerd(t)
	base := [][]byte{dockerimage.LayerTar(1, "a", 300<<10), dockerimage.LayerTar(2, "b", 200<<10)}
	baseImg := dockerimage.NewTestImage(base, true, "base")
	r := containerdRun(t, d, containerdSpec(baseImg, "lab/base:1", workDir(t), d), &node.FakeLeecher{Files: files(baseImg)})
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Fatalf("base job: exit %d: %s", code, r.summary())
	}

	app := dockerimage.NewTestImage(append(base, dockerimage.LayerTar(3, "c", 100<<10), dockerimage.LayerTar(4, "d", 400<<10), dockerimage.LayerTar(5, "e", 10<<10)), true, "app")
	gate := make(chan struct{})
	l := &node.FakeLeecher{Files: files(app), Gate: gate}
	r = containerdRun(t, d, containerdSpec(app, "lab/app:1", workDir(t), d), l)
	r.waitFor("the check's message", func(ev jobspec.Event) bool {
		return ev.Kind == jobspec.EventLog && strings.HasPrefix(ev.Message, "containerd has 2 of 5 layers")
	})
	r.waitState(jobspec.StateDownloading)
	// Layer 3 arrives: it is unpacked while 4 and 5 still download.
	release(t, gate)
	waitUntil(t, "layer 3 unpacked", func() bool { return len(committed(t, d)) == 3 })
	release(t, gate)
	release(t, gate)
	done := r.waitState(jobspec.StateDone)
	if done.ImageID != app.ID {
		t.Errorf("done with %s, want %s", done.ImageID, app.ID)
	}
	if got := len(l.Requested()); got != 3 {
		t.Errorf("downloaded %d layers, want the 3 missing", got)
	}
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Fatalf("exit %d: %s", code, r.summary())
	}
	if got := d.Lines("k8s.io", "images", "ls", "-q"); !slices.Equal(got, []string{"docker.io/lab/app:1", "docker.io/lab/base:1"}) {
		t.Errorf("images %v", got)
	}
	if got := d.Lines("k8s.io", "leases", "ls", "-q"); len(got) != 0 {
		t.Errorf("leases left: %v", got)
	}
	if got := snapshots(t, d); len(got) != 5 {
		t.Errorf("snapshots %v, want the image's 5", got)
	}
}

// release lets the fake swarm deliver one more layer, failing the test if
// the node no longer takes it.
func release(t *testing.T, gate chan<- struct{}) {
	t.Helper()
	select {
	case gate <- struct{}{}:
	case <-time.After(time.Minute):
		t.Fatal("the node took no more layers within a minute")
	}
}

// committed lists the committed snapshots; an unpack in progress shows as
// an active one.
func committed(t *testing.T, d *containerdtest.Daemon) []string {
	var out []string
	for _, l := range snapshots(t, d) {
		if strings.HasSuffix(l, "Committed") {
			out = append(out, l)
		}
	}
	return out
}

func snapshots(t *testing.T, d *containerdtest.Daemon) []string {
	var out []string
	for _, l := range d.Lines("k8s.io", "snapshots", "ls") {
		if !strings.HasPrefix(l, "KEY") {
			out = append(out, l)
		}
	}
	return out
}

func TestNodeContainerd_CorruptLayerLeavesNothing(t *testing.T) {
	d := startContainerd(t)
	img := testImage(40, 100<<10, 200<<10, 300<<10)
	fs := files(img)
	fs[img.Layers[2].Digest] = dockerimage.LayerTar(41, "x", 300<<10)
	r := containerdRun(t, d, containerdSpec(img, "lab/app:2", workDir(t), d), &node.FakeLeecher{Files: fs})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	t.Logf("error event: %s", r.errorMessage())
	for _, what := range [][]string{{"images", "ls", "-q"}, {"leases", "ls", "-q"}, {"content", "ls", "-q"}} {
		if got := d.Lines("k8s.io", what...); len(got) != 0 {
			t.Errorf("%s: %v, want nothing", what[0], got)
		}
	}
	if got := snapshots(t, d); len(got) != 0 {
		t.Errorf("snapshots %v, want none", got)
	}
}

func TestNodeContainerd_StopDuringImportLeavesNothing(t *testing.T) {
	d := startContainerd(t)
	img := testImage(42, 8<<20, 48<<20)
	r := containerdRun(t, d, containerdSpec(img, "lab/app:3", workDir(t), d), &node.FakeLeecher{Files: files(img), Order: []string{img.Layers[1].Digest, img.Layers[0].Digest}})
	r.waitState(jobspec.StateImporting)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitCancelled && code != node.ExitOK {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if r.errorMessage() == "" {
		t.Skip("the import finished before the stop")
	}
	for _, what := range [][]string{{"images", "ls", "-q"}, {"leases", "ls", "-q"}, {"content", "ls", "-q"}} {
		if got := d.Lines("k8s.io", what...); len(got) != 0 {
			t.Errorf("%s: %v, want nothing", what[0], got)
		}
	}
	if got := snapshots(t, d); len(got) != 0 {
		t.Errorf("snapshots %v, want none", got)
	}
}

func TestNodeContainerd_KilledContainerdFailsTheJobAndIsCleanedWhenBack(t *testing.T) {
	d := startContainerd(t)
	img := testImage(44, 100<<10, 200<<10)
	gate := make(chan struct{})
	r := containerdRun(t, d, containerdSpec(img, "lab/app:5", workDir(t), d), &node.FakeLeecher{Files: files(img), Gate: gate})
	release(t, gate)
	waitUntil(t, "layer 1 unpacked", func() bool { return len(committed(t, d)) == 1 })
	d.Kill()
	// containerd comes back while the node cleans up.
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		restarted <- d.Restart()
	}()
	release(t, gate)
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	t.Logf("error event: %s", r.errorMessage())
	for _, what := range [][]string{{"images", "ls", "-q"}, {"leases", "ls", "-q"}, {"content", "ls", "-q"}} {
		if got := d.Lines("k8s.io", what...); len(got) != 0 {
			t.Errorf("%s: %v, want nothing", what[0], got)
		}
	}
	if got := snapshots(t, d); len(got) != 0 {
		t.Errorf("snapshots %v, want none", got)
	}
}

func TestNode_ContainerdJobOnANodeWithoutContainerdFails(t *testing.T) {
	img := testImage(43, 1000)
	spec := node.SpecFor(img, "lab/app:4", workDir(t))
	spec.Runtime = jobspec.RuntimeContainerd
	r := start(t, setup{spec: spec})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "connect to containerd") {
		t.Errorf("error %q, want the connect step named", msg)
	}
}

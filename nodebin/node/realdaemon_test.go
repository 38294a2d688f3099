package node_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/dockerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
)

// realRun runs a node against a real daemon with a fake swarm.
func realRun(t *testing.T, dd *dockerdtest.Daemon, spec *jobspec.Spec, l *node.FakeLeecher) *run {
	t.Helper()
	r := start(t, setup{spec: spec, leecher: l, wait: true})
	r.connect = func(ctx context.Context) (node.DockerAPI, error) { return dockerimage.Connect(ctx, dd.Host) }
	close(r.ready)
	return r
}

func daemonContents(t *testing.T, dd *dockerdtest.Daemon) []string {
	t.Helper()
	imgs, err := dd.Client(t).ImageList(t.Context(), image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range imgs {
		out = append(out, s.ID)
		out = append(out, s.RepoTags...)
	}
	slices.Sort(out)
	return out
}

func startDockerd(t *testing.T) *dockerdtest.Daemon {
	if testing.Short() {
		t.Skip("starts dockerd")
	}
	return dockerdtest.Start(t)
}

func TestNodeRealDaemon_ImportsOnTopOfThePresentBase(t *testing.T) {
	dd := startDockerd(t)
	base := [][]byte{dockerimage.LayerTar(1, "a", 300<<10), dockerimage.LayerTar(2, "b", 200<<10)}
	baseImg := dockerimage.NewTestImage(base, true, "base")
	r := realRun(t, dd, node.SpecFor(baseImg, "lab/base:1", workDir(t)), &node.FakeLeecher{Files: files(baseImg)})
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Fatalf("base job: exit %d: %s", code, r.summary())
	}

	app := dockerimage.NewTestImage(append(base, dockerimage.LayerTar(3, "c", 100<<10), dockerimage.LayerTar(4, "d", 400<<10), dockerimage.LayerTar(5, "e", 10<<10)), true, "app")
	gate := make(chan struct{})
	l := &node.FakeLeecher{Files: files(app), Gate: gate}
	r = realRun(t, dd, node.SpecFor(app, "lab/app:1", workDir(t)), l)
	r.waitState(jobspec.StateDownloading)
	for range 3 {
		gate <- struct{}{}
	}
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
	want := []string{baseImg.ID, app.ID, "lab/app:1", "lab/base:1"}
	slices.Sort(want)
	if got := daemonContents(t, dd); !slices.Equal(got, want) {
		t.Errorf("daemon holds %v, want %v (no temporary images)", got, want)
	}
}

func TestNodeRealDaemon_CorruptLayerLeavesNothing(t *testing.T) {
	dd := startDockerd(t)
	img := testImage(30, 100<<10, 200<<10, 300<<10)
	fs := files(img)
	fs[img.Layers[2].Digest] = dockerimage.LayerTar(31, "x", 300<<10)
	r := realRun(t, dd, node.SpecFor(img, "lab/app:2", workDir(t)), &node.FakeLeecher{Files: fs})
	if code := r.exit(); code != node.ExitFailed {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	t.Logf("error event: %s", r.errorMessage())
	if got := daemonContents(t, dd); len(got) != 0 {
		t.Errorf("daemon holds %v, want nothing", got)
	}
}

func TestNodeRealDaemon_StopDuringImportLeavesNothing(t *testing.T) {
	dd := startDockerd(t)
	img := testImage(32, 8<<20, 48<<20)
	r := realRun(t, dd, node.SpecFor(img, "lab/app:3", workDir(t)), &node.FakeLeecher{Files: files(img), Order: []string{img.Layers[1].Digest, img.Layers[0].Digest}})
	r.waitState(jobspec.StateImporting)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitCancelled {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if got := daemonContents(t, dd); len(got) != 0 {
		t.Errorf("daemon holds %v, want nothing", got)
	}
}

func TestNodeRealDaemon_RegistryModePulls(t *testing.T) {
	dd := startDockerd(t)
	reg := dd.StartRegistry(t)
	c := dd.Client(t)
	ctx := t.Context()
	ref := reg + "/lab/app:1"
	img := testImage(40, 300<<10, 200<<10)
	// Put the image into the registry: load, push, remove locally.
	d := dockerimage.New(c, nil)
	files, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	undo, err := d.Record(ctx, ref, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: ref, ID: img.ID, Config: img.Config, Names: img.Names(), Job: "push"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, files); err != nil {
		t.Fatal(err)
	}
	rc, err := c.ImagePush(ctx, ref, image.PushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(out), "digest: sha256:") {
		t.Fatalf("push: %s", out)
	}
	if _, err := c.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
		t.Fatal(err)
	}

	spec := &jobspec.Spec{Version: jobspec.Version, JobID: "job1", Image: ref, ImageID: img.ID, Config: img.Config, Mode: "registry", WorkDir: workDir(t), RegistryAuth: "e30="}
	r := start(t, setup{spec: spec, wait: true})
	r.connect = func(ctx context.Context) (node.DockerAPI, error) { return dockerimage.Connect(ctx, dd.Host) }
	close(r.ready)
	// No tick is sent: the node reports the finished pull before done.
	p := r.waitFor("progress", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventProgress }).Progress
	done := r.waitState(jobspec.StateDone)
	if done.ImageID != img.ID {
		t.Errorf("done with %s, want %s", done.ImageID, img.ID)
	}
	if len(p.Layers) != 2 {
		t.Fatalf("progress has %d layers, want 2: %+v", len(p.Layers), p)
	}
	for _, l := range p.Layers {
		if l.Total == 0 || l.Done != l.Total || !strings.HasPrefix(l.Digest, "sha256:") && len(l.Digest) != 12 {
			t.Errorf("layer progress %+v, want complete", l)
		}
	}
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit %d: %s", code, r.summary())
	}
	if got, err := c.ImageInspect(ctx, ref); err != nil || got.ID != img.ID {
		t.Errorf("daemon has %s (%v), want %s", got.ID, err, img.ID)
	}
}

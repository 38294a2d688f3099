package containerdimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/containerdimage"
	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/containerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/testbed"
)

const ns = "k8s.io"

// realContainerd starts a private containerd (skipping without root) and
// connects to it, with a quick probe so that a paused daemon fails calls
// within seconds.
func realContainerd(t *testing.T) (*containerdimage.Client, *containerdtest.Daemon) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containerd")
	}
	d := containerdtest.Start(t)
	return connect(t, d), d
}

func connect(t *testing.T, d *containerdtest.Daemon) *containerdimage.Client {
	t.Helper()
	c, err := containerdimage.Connect(context.Background(), containerdimage.Config{
		Address: d.Address, Namespace: ns, ProbeEvery: 500 * time.Millisecond, ProbeTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testImage(seed uint64, gz bool, sizes ...int) dockerimage.TestImage {
	var tars [][]byte
	for i, s := range sizes {
		tars = append(tars, dockerimage.LayerTar(seed*100+uint64(i), "f", s))
	}
	return dockerimage.NewTestImage(tars, gz, "containerd")
}

// image is ti as the node hands it over, named name, for job.
func image(t *testing.T, ti dockerimage.TestImage, name, job string, gz bool) containerdimage.Image {
	t.Helper()
	full, err := containerdimage.ImageName(name)
	if err != nil {
		t.Fatal(err)
	}
	img := containerdimage.Image{Name: full, ID: ti.ID, Config: ti.Config, Job: job}
	for _, l := range ti.Layers {
		mt := "tar"
		if gz {
			mt = "tar+gzip"
		}
		img.Layers = append(img.Layers, jobspec.Layer{
			DiffID: l.DiffID, ChainID: l.ChainID, Digest: l.Digest, Size: int64(len(l.File)), MediaType: mt,
		})
	}
	return img
}

func files(t *testing.T, ti dockerimage.TestImage) []string {
	t.Helper()
	f, err := ti.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// importImage runs a whole import; a failure is rolled back.
func importImage(ctx context.Context, c *containerdimage.Client, img containerdimage.Image, files []string) error {
	im, err := c.Begin(ctx, img)
	if err != nil {
		return err
	}
	if err := im.Finish(ctx, files); err != nil {
		return errors.Join(err, im.Rollback(context.WithoutCancel(ctx)))
	}
	return im.Commit(ctx)
}

// state is what containerd holds in the namespace, as ctr lists it.
type state struct {
	Images, Leases, Snapshots, Content, Ingests []string
	SnapshotDirs                                int
}

func stateOf(t *testing.T, d *containerdtest.Daemon) state {
	t.Helper()
	var s state
	s.Images = d.Lines(ns, "images", "ls", "-q")
	s.Leases = d.Lines(ns, "leases", "ls", "-q")
	for _, l := range d.Lines(ns, "snapshots", "--snapshotter", "overlayfs", "ls") {
		if !strings.HasPrefix(l, "KEY") {
			s.Snapshots = append(s.Snapshots, strings.Fields(l)[0]+" "+strings.Fields(l)[len(strings.Fields(l))-1])
		}
	}
	s.Content = d.Lines(ns, "content", "ls", "-q")
	for _, l := range d.Lines(ns, "content", "active") {
		if !strings.HasPrefix(l, "REF") {
			s.Ingests = append(s.Ingests, l)
		}
	}
	dirs, _ := os.ReadDir(filepath.Join(d.Root, "io.containerd.snapshotter.v1.overlayfs", "snapshots"))
	s.SnapshotDirs = len(dirs)
	for _, l := range [][]string{s.Images, s.Leases, s.Snapshots, s.Content, s.Ingests} {
		slices.Sort(l)
	}
	return s
}

func sameState(t *testing.T, what string, got, want state) {
	t.Helper()
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"images", got.Images, want.Images}, {"leases", got.Leases, want.Leases}, {"snapshots", got.Snapshots, want.Snapshots},
		{"content", got.Content, want.Content}, {"ingests", got.Ingests, want.Ingests},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %s %q, want %q", what, c.name, c.got, c.want)
		}
	}
	if got.SnapshotDirs != want.SnapshotDirs {
		t.Errorf("%s: %d snapshot dirs on disk, want %d", what, got.SnapshotDirs, want.SnapshotDirs)
	}
}

func TestImport_UnpacksChecksAndOutlivesItsLease(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(map[bool]string{false: "tar", true: "gzip"}[gz], func(t *testing.T) {
			c, d := realContainerd(t)
			ctx := context.Background()
			ti := testImage(1, gz, 3000, 200_000, 5000)
			img := image(t, ti, "lab/app:v1", "job1", gz)
			if img.Name != "docker.io/lab/app:v1" {
				t.Fatalf("name %q", img.Name)
			}
			if err := importImage(ctx, c, img, files(t, ti)); err != nil {
				t.Fatal(err)
			}
			s := stateOf(t, d)
			if !slices.Equal(s.Images, []string{img.Name}) || len(s.Leases) != 0 || len(s.Snapshots) != 3 || len(s.Ingests) != 0 {
				t.Fatalf("after import: %+v", s)
			}
			// A restart runs the garbage collector: the image must hold
			// its content and snapshots by itself.
			d.Kill()
			if err := d.Restart(); err != nil {
				t.Fatal(err)
			}
			c = connect(t, d)
			if err := c.Check(ctx, img.Name, img.ID, img.Layers); err != nil {
				t.Fatalf("after a restart: %v", err)
			}
			sameState(t, "after a restart", stateOf(t, d), s)
			// ctr sees an unpacked image with the job's config digest.
			if out := d.Ctr(ns, "images", "check"); !strings.Contains(out, "complete") {
				t.Errorf("ctr images check: %s", out)
			}
		})
	}
}

func TestImport_NativeSnapshotter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	d := containerdtest.Start(t)
	c, err := containerdimage.Connect(context.Background(), containerdimage.Config{Address: d.Address, Namespace: ns, Snapshotter: "native"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Snapshotter() != "native" {
		t.Fatalf("snapshotter %q", c.Snapshotter())
	}
	ti := testImage(14, true, 3000, 4000)
	img := image(t, ti, "lab/app:v1", "job", true)
	if err := importImage(context.Background(), c, img, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	if got := len(d.Lines(ns, "snapshots", "--snapshotter", "native", "ls")); got != 3 {
		t.Errorf("%d lines of native snapshots, want a header and 2", got)
	}
	if _, err := containerdimage.Connect(context.Background(), containerdimage.Config{Address: d.Address, Snapshotter: "zfs"}); err == nil {
		t.Error("connected for a snapshotter that did not load")
	}
}

func TestImport_WrongNameOrIDFailsTheCheck(t *testing.T) {
	c, _ := realContainerd(t)
	ctx := context.Background()
	ti := testImage(2, false, 1000, 2000)
	img := image(t, ti, "lab/app:v1", "j", false)
	if err := importImage(ctx, c, img, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	other := testImage(3, false, 1000)
	if err := c.Check(ctx, img.Name, other.ID, img.Layers); !errors.Is(err, containerdimage.ErrImageMismatch) {
		t.Errorf("check against another ID: %v", err)
	}
	if err := c.Check(ctx, "docker.io/lab/none:v1", img.ID, img.Layers); !errors.Is(err, containerdimage.ErrImageMismatch) {
		t.Errorf("check of a missing name: %v", err)
	}
}

func TestImport_SkipsLayersContainerdHas(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	full := testImage(4, false, 100_000, 50_000, 20_000)
	base := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(400, "f", 100_000), dockerimage.LayerTar(401, "f", 50_000)}, false, "base")
	if base.Layers[1].ChainID != full.Layers[1].ChainID {
		t.Fatal("base does not share the full image's first two layers")
	}
	if err := importImage(ctx, c, image(t, base, "lab/base:v1", "base", false), files(t, base)); err != nil {
		t.Fatal(err)
	}
	img := image(t, full, "lab/app:v1", "job", false)
	im, err := c.Begin(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if im.Present() != 2 || im.Unpacked() != 2 || im.Had() {
		t.Fatalf("present %d, unpacked %d, had %v; want 2, 2, false", im.Present(), im.Unpacked(), im.Had())
	}
	// The job's lease is there while it runs, and expires on its own.
	if out := d.Ctr(ns, "leases", "ls"); !strings.Contains(out, containerdimage.LeaseID("job")) || !strings.Contains(out, "containerd.io/gc.expire=") {
		t.Errorf("leases during the job:\n%s", out)
	}
	// Only the missing layer's file is there.
	f := files(t, full)
	f[0], f[1] = "", ""
	if err := im.Finish(ctx, f); err != nil {
		t.Fatal(errors.Join(err, im.Rollback(ctx)))
	}
	if err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if s := stateOf(t, d); len(s.Snapshots) != 3 || len(s.Images) != 2 {
		t.Errorf("after import: %+v", s)
	}
	// Again: the image is there, nothing to do.
	im, err = c.Begin(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if !im.Had() || im.Present() != 3 {
		t.Errorf("second job: had %v, present %d", im.Had(), im.Present())
	}
	if err := im.Finish(ctx, make([]string, 3)); err != nil {
		t.Fatal(err)
	}
	if err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestImport_LayerInContentStoreIsUnpackedWithoutItsFile(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	tars := [][]byte{dockerimage.LayerTar(500, "f", 30_000), dockerimage.LayerTar(501, "f", 40_000)}
	ti := dockerimage.NewTestImage(tars, true, "app")
	// Layer 1's blob is in the content store but not unpacked, as after a
	// pull for another snapshotter: an image holds it, its snapshot is gone.
	base := dockerimage.NewTestImage(tars[:1], true, "base")
	if err := importImage(ctx, c, image(t, base, "lab/base:v1", "base", true), files(t, base)); err != nil {
		t.Fatal(err)
	}
	d.Ctr(ns, "snapshots", "rm", base.Layers[0].ChainID)
	img := image(t, ti, "lab/app:v1", "job", true)
	im, err := c.Begin(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if im.Present() != 1 || im.Unpacked() != 0 || im.Registered() != 1 {
		t.Fatalf("present %d, unpacked %d, registered %d; want 1, 0, 1", im.Present(), im.Unpacked(), im.Registered())
	}
	f := files(t, ti)
	f[0] = ""
	if err := im.Finish(ctx, f); err != nil {
		t.Fatal(errors.Join(err, im.Rollback(ctx)))
	}
	if err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestImport_CorruptedLayerLeavesNothing(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	base := testImage(6, false, 10_000)
	if err := importImage(ctx, c, image(t, base, "lab/base:v1", "base", false), files(t, base)); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, d)
	for _, gz := range []bool{false, true} {
		ti := testImage(7, gz, 10_000, 300_000, 20_000)
		f := files(t, ti)
		b, err := os.ReadFile(f[1])
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		if err := os.WriteFile(f[1], b, 0o644); err != nil {
			t.Fatal(err)
		}
		im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "job", gz))
		if err != nil {
			t.Fatal(err)
		}
		if err := im.LoadPrefix(ctx, 1, f); err != nil {
			t.Fatal(err)
		}
		err = im.Finish(ctx, f)
		if err == nil {
			t.Fatal("import of a corrupted layer succeeded")
		}
		t.Logf("gzip %v: %v", gz, err)
		if err := im.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		sameState(t, "after rollback", stateOf(t, d), before)
	}
}

// TestImport_CRIHostRollbackLeavesNothing imports into a containerd whose
// CRI plugin adds a sha256:ID name for every new image, and rolls back.
func TestImport_CRIHostRollbackLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containerd")
	}
	d := containerdtest.StartCRI(t)
	c := connect(t, d)
	ctx := context.Background()
	before := stateOf(t, d)
	ti := testImage(13, false, 5000, 6000)
	img := image(t, ti, "lab/app:v1", "job", false)
	im, err := c.Begin(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Finish(ctx, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	// Rolled back at once: the plugin may add its name during the
	// rollback, or have added it already.
	if err := im.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Give the plugin time to act on the last events before looking.
	time.Sleep(time.Second)
	sameState(t, "after rollback", stateOf(t, d), before)

	// A job that succeeds keeps the plugin's name, as a pull would.
	im, err = c.Begin(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Finish(ctx, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	if err := im.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the plugin's ID name", func() bool { return slices.Contains(d.Lines(ns, "images", "ls", "-q"), ti.ID) })
}

func TestImport_RollbackPointsTheNameBack(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	old := testImage(8, false, 5000)
	oldImg := image(t, old, "lab/app:v1", "old", false)
	if err := importImage(ctx, c, oldImg, files(t, old)); err != nil {
		t.Fatal(err)
	}
	before := stateOf(t, d)
	ti := testImage(9, false, 5000, 6000)
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "new", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Finish(ctx, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	// While the name names the new image, nothing names the old one: a
	// garbage collection now (any lease or image deleted on the host
	// starts one) must not take it.
	collectGarbage(t, d)
	// The job fails after its image is in (the bastion stopped it, a later
	// step failed): the name must name the old image again.
	if err := im.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(ctx, oldImg.Name, oldImg.ID, oldImg.Layers); err != nil {
		t.Errorf("old image after rollback: %v", err)
	}
	sameState(t, "after rollback", stateOf(t, d), before)
}

func TestImport_PausedContainerdFailsAndIsCleanedWhenBack(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	before := stateOf(t, d)
	ti := testImage(10, false, 100_000, 4<<20)
	f := files(t, ti)
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "job", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.LoadPrefix(ctx, 1, f); err != nil {
		t.Fatal(err)
	}
	d.Pause()
	err = im.Finish(ctx, f)
	if !errors.Is(err, containerdimage.ErrUnresponsive) {
		d.Resume()
		t.Fatalf("finish with containerd paused: %v, want ErrUnresponsive", err)
	}
	t.Log(err)
	// It comes back while the node cleans up.
	time.AfterFunc(2*time.Second, d.Resume)
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := im.Rollback(cctx); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after rollback", stateOf(t, d), before)
}

func TestImport_KilledContainerdFailsAndIsCleanedAfterRestart(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	before := stateOf(t, d)
	ti := testImage(11, false, 100_000, 4<<20)
	f := files(t, ti)
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "job", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.LoadPrefix(ctx, 1, f); err != nil {
		t.Fatal(err)
	}
	d.Kill()
	if err := im.Finish(ctx, f); err == nil {
		t.Fatal("finish with containerd killed succeeded")
	} else {
		t.Log(err)
	}
	// A restarted containerd still holds the job's lease and snapshot;
	// the rollback waits for it and removes them.
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		restarted <- d.Restart()
	}()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	err = im.Rollback(cctx)
	if rerr := <-restarted; rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, "after rollback", stateOf(t, d), before)
}

func TestImport_ContainerdKilledMidWriteIsCleanedAfterRestart(t *testing.T) {
	c, d := realContainerd(t)
	before := stateOf(t, d)
	ti := testImage(15, false, 128<<20)
	f := files(t, ti)
	ctx := context.Background()
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "job", false))
	if err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- im.Finish(ctx, f) }()
	// Kill it once the layer's ingest is under way.
	var killed bool
	for !killed {
		select {
		case err := <-finished:
			t.Skipf("the import ended before the kill: %v", err)
		default:
		}
		if out, _ := d.TryCtr(ns, "content", "active"); strings.Contains(out, "layercast-ingest-job-") {
			d.Kill()
			killed = true
		}
	}
	if err := <-finished; err == nil {
		t.Fatal("import succeeded with containerd killed")
	} else {
		t.Log(err)
	}
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := im.Rollback(cctx); err != nil {
		t.Fatal(err)
	}
	after := stateOf(t, d)
	sameState(t, "after rollback", after, before)
	ingest, _ := os.ReadDir(filepath.Join(d.Root, "io.containerd.content.v1.content", "ingest"))
	if len(ingest) != 0 {
		t.Errorf("ingest dirs left on disk: %d", len(ingest))
	}
}

func TestImport_CancelMidWriteLeavesNothing(t *testing.T) {
	c, d := realContainerd(t)
	before := stateOf(t, d)
	ti := testImage(12, false, 64<<20)
	f := files(t, ti)
	ctx, cancel := context.WithCancel(context.Background())
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "job", false))
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := im.Finish(ctx, f); err == nil {
		t.Skip("the import finished before the cancel")
	}
	if err := im.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	sameState(t, "after rollback", stateOf(t, d), before)
}

// TestImport_CtrRunsTheImportedImage imports a lab image and runs it with
// ctr, as the kubelet would start it: from the unpacked snapshots, without
// pulling.
func TestImport_CtrRunsTheImportedImage(t *testing.T) {
	c, d := realContainerd(t)
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("no runc")
	}
	ctx := context.Background()
	var archive bytes.Buffer
	info, err := testbed.WriteImage(&archive, testbed.ImageSpec{Tag: "lab/app:v1", Size: 1 << 20, Layers: 2})
	if err != nil {
		t.Fatal(err)
	}
	ti := fromArchive(t, archive.Bytes())
	if ti.ID != info.ID {
		t.Fatalf("config %s, want %s", ti.ID, info.ID)
	}
	img := image(t, ti, info.Tag, "run", false)
	if err := importImage(ctx, c, img, files(t, ti)); err != nil {
		t.Fatal(err)
	}
	out := d.Ctr(ns, "run", "--rm", img.Name, "layercast-test-run")
	if !strings.Contains(out, strings.TrimSpace(testbed.HelloMessage)) {
		t.Errorf("ctr run printed %q, want %q", out, testbed.HelloMessage)
	}
}

// fromArchive reads a docker-save archive's config and layers.
func fromArchive(t *testing.T, b []byte) dockerimage.TestImage {
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
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		entries[h.Name] = data
	}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(entries["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	var tars [][]byte
	for _, l := range m[0].Layers {
		tars = append(tars, entries[l])
	}
	ti := dockerimage.NewTestImage(tars, false, "")
	ti.Config = entries[m[0].Config]
	ti.ID = dockerimage.Digest(ti.Config)
	return ti
}

// collectGarbage runs containerd's garbage collector to the end, as any
// client that deletes a lease with --sync does.
func collectGarbage(t *testing.T, d *containerdtest.Daemon) {
	t.Helper()
	d.Ctr(ns, "leases", "create", "--id", "gc-now")
	d.Ctr(ns, "leases", "delete", "--sync", "gc-now")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJobLeases_AKilledNodesLeaseIsFoundAndDropped: a node killed in the
// middle of an import leaves its lease (and what it holds); the next job
// finds it by the job's label and drops it, which leaves nothing.
func TestJobLeases_AKilledNodesLeaseIsFoundAndDropped(t *testing.T) {
	c, d := realContainerd(t)
	ctx := context.Background()
	before := stateOf(t, d)
	ti := testImage(12, false, 100_000, 1<<20)
	f := files(t, ti)
	im, err := c.Begin(ctx, image(t, ti, "lab/app:v1", "killed-job", false))
	if err != nil {
		t.Fatal(err)
	}
	if err := im.LoadPrefix(ctx, 1, f); err != nil {
		t.Fatal(err)
	}
	// The node dies here: no Finish, no Rollback.
	jobs, err := c.JobLeases(ctx)
	if err != nil || !slices.Equal(jobs, []string{"killed-job"}) {
		t.Fatalf("JobLeases = %v, %v; want the killed job's", jobs, err)
	}
	if err := c.DropJobLease(ctx, "killed-job"); err != nil {
		t.Fatal(err)
	}
	if err := c.DropJobLease(ctx, "killed-job"); err != nil {
		t.Fatalf("dropping a lease that is gone: %v", err)
	}
	if jobs, err := c.JobLeases(ctx); err != nil || len(jobs) != 0 {
		t.Fatalf("JobLeases after the drop = %v, %v", jobs, err)
	}
	sameState(t, "after the drop", stateOf(t, d), before)
}

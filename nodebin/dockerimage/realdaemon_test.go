package dockerimage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/dockerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// realDaemon starts a private dockerd (skipping without root) and returns
// the Daemon over it.
func realDaemon(t *testing.T) (*dockerimage.Daemon, *client.Client, *dockerdtest.Daemon) {
	if testing.Short() {
		t.Skip("starts dockerd")
	}
	dd := dockerdtest.Start(t)
	c := dd.Client(t)
	return dockerimage.New(c, nil), c, dd
}

func testImage(seed uint64, sizes ...int) dockerimage.TestImage {
	var tars [][]byte
	for i, s := range sizes {
		tars = append(tars, dockerimage.LayerTar(seed*100+uint64(i), "f", s))
	}
	return dockerimage.NewTestImage(tars, seed%2 == 1, "real")
}

func loadFull(t *testing.T, ctx context.Context, d *dockerimage.Daemon, img dockerimage.TestImage, ref string, present int) error {
	t.Helper()
	files, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	undo, err := d.Record(ctx, ref, img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: ref, ID: img.ID, Config: img.Config, Names: img.Names(), Job: "t"}, present)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, files); err != nil {
		if rerr := undo.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			t.Errorf("rollback: %v", rerr)
		}
		return err
	}
	return nil
}

func imageIDs(t *testing.T, c *client.Client) []string {
	t.Helper()
	imgs, err := c.ImageList(t.Context(), image.ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range imgs {
		ids = append(ids, s.ID)
		for _, tag := range s.RepoTags {
			ids = append(ids, tag)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestRealDaemon_LoadGivesTheJobsImageID(t *testing.T) {
	d, c, dd := realDaemon(t)
	ctx := t.Context()
	for _, img := range []dockerimage.TestImage{testImage(2, 3000, 50000, 1000), testImage(3, 2000, 70000)} {
		ref := "lab/app:" + img.ID[7:15]
		if err := loadFull(t, ctx, d, img, ref, 0); err != nil {
			t.Fatalf("load (gzip=%v): %v", img.Layers[0].File[0] == 0x1f, err)
		}
		got, err := c.ImageInspect(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != img.ID || !slices.Equal(got.RootFS.Layers, img.DiffIDs()) {
			t.Errorf("daemon has %s %v, want %s %v", got.ID, got.RootFS.Layers, img.ID, img.DiffIDs())
		}
		for _, l := range img.Layers {
			if !dd.HasLayer(l.ChainID) {
				t.Errorf("layer store has no chain ID %s: ChainIDs disagrees with the daemon", l.ChainID)
			}
		}
	}
}

func TestRealDaemon_SkipsFilesOfLayersItHas(t *testing.T) {
	d, c, _ := realDaemon(t)
	ctx := t.Context()
	base := [][]byte{dockerimage.LayerTar(10, "a", 40000), dockerimage.LayerTar(11, "b", 30000)}
	baseImg := dockerimage.NewTestImage(base, false, "base")
	if err := loadFull(t, ctx, d, baseImg, "lab/base:1", 0); err != nil {
		t.Fatal(err)
	}
	app := dockerimage.NewTestImage(append(base, dockerimage.LayerTar(12, "c", 20000), dockerimage.LayerTar(13, "d", 10000)), false, "app")
	present, err := d.PresentPrefix(ctx, jobspec.ChainIDs(app.DiffIDs()))
	if err != nil {
		t.Fatal(err)
	}
	if present != 2 {
		t.Fatalf("PresentPrefix = %d, want 2", present)
	}
	dir := t.TempDir()
	files, err := app.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The files of the present layers are gone: the load must not need them.
	for _, f := range files[:present] {
		os.Remove(f)
	}
	undo, err := d.Record(ctx, "lab/app:1", app.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/app:1", ID: app.ID, Config: app.Config, Names: app.Names(), Job: "t"}, present)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, files); err != nil {
		t.Fatalf("load without the present layers' files: %v", err)
	}
	got, err := c.ImageInspect(ctx, "lab/app:1")
	if err != nil || got.ID != app.ID {
		t.Fatalf("inspect: %v %s, want %s", err, got.ID, app.ID)
	}
}

func TestRealDaemon_PrefixLoadsThenFinalLoad(t *testing.T) {
	d, c, _ := realDaemon(t)
	ctx := t.Context()
	img := testImage(4, 10000, 20000, 30000, 40000)
	files, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	undo, err := d.Record(ctx, "lab/app:2", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/app:2", ID: img.ID, Config: img.Config, Names: img.Names(), Job: "job-7"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.LoadPrefix(ctx, 1, files); err != nil {
		t.Fatal(err)
	}
	if err := l.LoadPrefix(ctx, 3, files); err != nil {
		t.Fatal(err)
	}
	// Only the last layer's file is left: the final load must skip the rest.
	for _, f := range files[:3] {
		os.Remove(f)
	}
	if err := l.Finish(ctx, files); err != nil {
		t.Fatal(err)
	}
	if err := undo.DropTemps(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := imageIDs(t, c), []string{"lab/app:2", img.ID}; !slices.Equal(got, want) {
		t.Errorf("daemon holds %v, want %v", got, want)
	}
}

func TestRealDaemon_CorruptLayerLeavesNoImage(t *testing.T) {
	d, c, dd := realDaemon(t)
	ctx := t.Context()
	old := testImage(5, 5000)
	if err := loadFull(t, ctx, d, old, "lab/app:3", 0); err != nil {
		t.Fatal(err)
	}
	before := imageIDs(t, c)
	img := testImage(6, 10000, 20000, 30000)
	// Layer 2's file is another tar than the config's diff ID says.
	img.Layers[2].File = dockerimage.LayerTar(99, "f", 30000)
	err := loadFull(t, ctx, d, img, "lab/app:3", 0)
	if err == nil {
		t.Fatal("load of a corrupted layer succeeded")
	}
	t.Logf("load failed as it should: %v", err)
	if got := imageIDs(t, c); !slices.Equal(got, before) {
		t.Errorf("daemon holds %v after the failed load, want %v", got, before)
	}
	if got, _ := c.ImageInspect(ctx, "lab/app:3"); got.ID != old.ID {
		t.Errorf("lab/app:3 points to %s, want the earlier %s", got.ID, old.ID)
	}
	for _, l := range img.Layers {
		if dd.HasLayer(l.ChainID) {
			t.Errorf("layer %s left in the layer store", l.ChainID)
		}
	}
}

func TestRealDaemon_PrefixLoadThenCorruptLayerLeavesNothing(t *testing.T) {
	d, c, _ := realDaemon(t)
	ctx := t.Context()
	img := testImage(7, 10000, 20000, 30000)
	img.Layers[2].File = dockerimage.LayerTar(98, "f", 30000)
	files, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	undo, err := d.Record(ctx, "lab/app:4", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/app:4", ID: img.ID, Config: img.Config, Names: img.Names(), Job: "j"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.LoadPrefix(ctx, 2, files); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, files); err == nil {
		t.Fatal("final load with a corrupt layer succeeded")
	}
	if err := undo.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if got := imageIDs(t, c); len(got) != 0 {
		t.Errorf("daemon holds %v, want nothing", got)
	}
}

// cancelling wraps the client so a test can cancel a load at a chosen point
// of the archive stream.
type cancelling struct {
	*client.Client
	after  int64 // cancel once this many bytes went to the daemon; -1: at the end of the archive
	cancel context.CancelFunc
	sent   atomic.Int64
}

func (c *cancelling) ImageLoad(ctx context.Context, r io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error) {
	return c.Client.ImageLoad(ctx, &countingReader{c: c, r: r}, opts...)
}

type countingReader struct {
	c *cancelling
	r io.Reader
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	sent := cr.c.sent.Add(int64(n))
	if (cr.c.after >= 0 && sent >= cr.c.after) || (cr.c.after < 0 && errors.Is(err, io.EOF)) {
		cr.c.cancel()
	}
	return n, err
}

func TestRealDaemon_CancelledLoadLeavesNothing(t *testing.T) {
	_, c, dd := realDaemon(t)
	img := testImage(8, 4<<20, 16<<20)
	for name, after := range map[string]int64{"mid-stream": 6 << 20, "after the whole archive": -1} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			api := &cancelling{Client: c, after: after, cancel: cancel}
			d := dockerimage.New(api, nil)
			files, err := img.WriteFiles(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			undo, err := d.Record(ctx, "lab/app:5", img.ID)
			if err != nil {
				t.Fatal(err)
			}
			l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/app:5", ID: img.ID, Config: img.Config, Names: img.Names(), Job: "t"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Finish(ctx, files); !errors.Is(err, context.Canceled) {
				t.Fatalf("load error %v, want context.Canceled", err)
			}
			// A daemon that got the whole archive finishes the load: Load
			// waited for it, so the image is there to be removed now.
			_, err = c.ImageInspect(t.Context(), img.ID)
			if present := err == nil; present != (after < 0) {
				t.Errorf("image present after the cancelled load: %v, want %v", present, after < 0)
			}
			if err := undo.Rollback(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := imageIDs(t, c); len(got) != 0 {
				t.Errorf("daemon holds %v after the cancelled load, want nothing", got)
			}
			for _, l := range img.Layers {
				if dd.HasLayer(l.ChainID) {
					t.Errorf("layer %s left in the layer store", l.ChainID)
				}
			}
			t.Logf("sent %d bytes before the cancel took effect", api.sent.Load())
		})
	}
	// The daemon removes its extraction dir of a cancelled load on its own
	// time, after the request ended: wait for it, bounded.
	tmp := filepath.Join(dd.Root, "tmp")
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, err := os.ReadDir(tmp)
		if err != nil || len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("daemon tmp dir holds %d entries 20s after the cancelled loads", len(entries))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startBench(b *testing.B) *dockerdtest.Daemon { return dockerdtest.Start(b) }

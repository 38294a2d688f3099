package dockerimage_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestPrefixConfig_CutsLayersAndTheirHistory(t *testing.T) {
	config := []byte(`{"architecture":"arm64","os":"linux","config":{"Env":["A=1"]},
		"rootfs":{"type":"layers","diff_ids":["` + sha("1") + `","` + sha("2") + `","` + sha("3") + `"]},
		"history":[{"created_by":"FROM"},{"created_by":"ENV A=1","empty_layer":true},{"created_by":"RUN x"},{"created_by":"CMD","empty_layer":true},{"created_by":"COPY y"}]}`)
	out, err := dockerimage.PrefixConfig(config, 2)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Architecture string
		Config       struct{ Env []string }
		History      []struct {
			CreatedBy string `json:"created_by"`
		}
	}
	if err := json.Unmarshal(out, &c); err != nil {
		t.Fatal(err)
	}
	diffIDs, err := dockerimage.DiffIDs(out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(diffIDs, []string{sha("1"), sha("2")}) {
		t.Errorf("diff_ids %v", diffIDs)
	}
	var history []string
	for _, h := range c.History {
		history = append(history, h.CreatedBy)
	}
	if !slices.Equal(history, []string{"FROM", "ENV A=1", "RUN x"}) {
		t.Errorf("history %v, want up to the entry of layer 2", history)
	}
	if c.Architecture != "arm64" || !slices.Equal(c.Config.Env, []string{"A=1"}) {
		t.Errorf("other fields lost: %s", out)
	}
	if _, err := dockerimage.PrefixConfig(config, 4); err == nil {
		t.Error("prefix longer than the image accepted")
	}
}

func TestWriteArchive_WritesDockerSaveLayoutWithoutPresentLayers(t *testing.T) {
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100), dockerimage.LayerTar(2, "b", 200), dockerimage.LayerTar(3, "c", 300)}, true, "x")
	paths, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := dockerimage.Archive{Config: img.Config, RepoTags: []string{"lab/app:1"}}
	for i, l := range img.Layers {
		al := dockerimage.ArchiveLayer{Name: dockerimage.LayerName(l.Digest)}
		if i > 0 { // the daemon has layer 0
			al.File = paths[i]
		}
		a.Layers = append(a.Layers, al)
	}
	var buf bytes.Buffer
	if err := dockerimage.WriteArchive(t.Context(), &buf, a); err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name], _ = io.ReadAll(tr)
	}
	var m []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(got["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"lab/app:1"}) || !slices.Equal(m[0].Layers, img.Names()) {
		t.Fatalf("manifest %s", got["manifest.json"])
	}
	if m[0].Config != strings.TrimPrefix(img.ID, "sha256:")+".json" || !bytes.Equal(got[m[0].Config], img.Config) {
		t.Errorf("config entry %q wrong", m[0].Config)
	}
	if _, ok := got[img.Names()[0]]; ok {
		t.Error("archive holds the file of a layer the daemon has")
	}
	for i := 1; i < 3; i++ {
		if !bytes.Equal(got[img.Names()[i]], img.Layers[i].File) {
			t.Errorf("layer %d content differs", i)
		}
	}
	if len(got) != 4 {
		t.Errorf("archive has %d entries, want manifest, config and 2 layers", len(got))
	}
}

func TestWriteArchive_StopsWhenCancelled(t *testing.T) {
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	paths, _ := img.WriteFiles(t.TempDir())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := dockerimage.WriteArchive(ctx, io.Discard, dockerimage.Archive{Config: img.Config, Layers: []dockerimage.ArchiveLayer{{Name: "l", File: paths[0]}}})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestUndo_PointsTheTagBackAndKeepsEarlierImages(t *testing.T) {
	f := dockerimage.NewFakeDaemon()
	d := dockerimage.New(f, nil)
	ctx := t.Context()
	old := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "old")
	f.Put(old, "lab/app:1")
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(2, "a", 100), dockerimage.LayerTar(3, "b", 100)}, false, "new")
	undo, err := d.Record(ctx, "lab/app:1", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/app:1", ID: img.ID, Config: img.Config, Names: img.Names(), Job: "j"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := img.WriteFiles(t.TempDir())
	if err := l.LoadPrefix(ctx, 1, paths); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx, paths); err != nil {
		t.Fatal(err)
	}
	if f.Refs()["lab/app:1"] != img.ID {
		t.Fatal("load did not move the tag")
	}
	if err := undo.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if refs, ids := f.Refs(), f.IDs(); len(refs) != 1 || refs["lab/app:1"] != old.ID || !slices.Equal(ids, []string{old.ID}) {
		t.Errorf("after rollback: tags %v images %v, want lab/app:1 -> %s only", refs, ids, old.ID)
	}
}

func TestUndo_LeavesAnEarlierImageItOnlyTagged(t *testing.T) {
	f := dockerimage.NewFakeDaemon()
	d := dockerimage.New(f, nil)
	ctx := t.Context()
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	f.Put(img, "other:1")
	undo, err := d.Record(ctx, "lab/app:2", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Tag(ctx, img.ID, "lab/app:2"); err != nil {
		t.Fatal(err)
	}
	if err := undo.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if refs := f.Refs(); len(refs) != 1 || refs["other:1"] != img.ID {
		t.Errorf("tags %v, want only other:1", refs)
	}
}

func TestPull_ReportsPerLayerProgressAndSkips(t *testing.T) {
	f := dockerimage.NewFakeDaemon()
	d := dockerimage.New(f, nil)
	base := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 1000)}, false, "b")
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 1000), dockerimage.LayerTar(2, "b", 3000)}, false, "x")
	f.Put(base, "")
	f.Registry["r/app:1"] = img
	var p dockerimage.PullProgress
	if err := d.Pull(t.Context(), "r/app:1", "", &p); err != nil {
		t.Fatal(err)
	}
	got := p.Snapshot()
	want := []dockerimage.PullLayer{
		{ID: img.Layers[0].Digest[7:19], Skipped: true},
		{ID: img.Layers[1].Digest[7:19], Done: int64(len(img.Layers[1].File)), Total: int64(len(img.Layers[1].File))},
	}
	if !slices.Equal(got, want) {
		t.Errorf("progress %+v, want %+v", got, want)
	}
	if err := d.Pull(t.Context(), "r/none:1", "", &p); err == nil {
		t.Error("pull of an unknown image succeeded")
	}
}

func TestLoader_RefusesAConfigOfAnotherImage(t *testing.T) {
	d := dockerimage.New(dockerimage.NewFakeDaemon(), nil)
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	undo, _ := d.Record(t.Context(), "a:1", img.ID)
	_, err := d.NewLoader(undo, dockerimage.Image{Ref: "a:1", ID: sha("other"), Config: img.Config, Names: img.Names()}, 0)
	if err == nil {
		t.Error("loader accepted a config that is not the image ID's")
	}
}

// loadMarked loads a one-layer image as ref through d, which marks its
// loads in a file, into the fake daemon fd. It returns what the file said
// when fd had read the whole archive, and whether the file is still there
// after the load returned.
func loadMarked(t *testing.T, ctx context.Context, d *dockerimage.Daemon, fd *dockerimage.FakeDaemon, ref string) (during string, after bool, err error) {
	t.Helper()
	dir := t.TempDir()
	marker := filepath.Join(dir, jobspec.LoadingFile)
	d.MarkLoadsIn(marker)
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	files, werr := img.WriteFiles(dir)
	if werr != nil {
		t.Fatal(werr)
	}
	onLoad := fd.OnLoad
	fd.OnLoad = func(ctx context.Context) {
		b, _ := os.ReadFile(marker)
		during = string(b)
		if onLoad != nil {
			onLoad(ctx)
		}
	}
	err = d.Load(ctx, dockerimage.Archive{Config: img.Config, RepoTags: []string{ref}, Layers: []dockerimage.ArchiveLayer{{Name: img.Names()[0], File: files[0]}}})
	_, serr := os.Stat(marker)
	return during, serr == nil, err
}

func TestLoad_NamesWhatItCreatesWhileTheDaemonHoldsTheWholeArchive(t *testing.T) {
	fd := dockerimage.NewFakeDaemon()
	during, after, err := loadMarked(t, t.Context(), dockerimage.New(fd, nil), fd, "a:1")
	if err != nil {
		t.Fatal(err)
	}
	if during != "a:1\n" {
		t.Errorf("marker while the daemon loads: %q, want the reference", during)
	}
	if after {
		t.Error("marker still there after the daemon answered")
	}
}

func TestLoad_KeepsTheMarkerWhenTheDaemonNeverAnswered(t *testing.T) {
	// The node gives up on the load (its job is cancelled) and the daemon
	// does not answer within the grace: it may still create the image.
	fd := dockerimage.NewFakeDaemon()
	ctx, cancel := context.WithCancel(t.Context())
	fd.OnLoad = func(callCtx context.Context) {
		cancel()
		<-callCtx.Done()
	}
	d := dockerimage.New(fd, nil)
	dockerimage.SetGrace(d, 50*time.Millisecond)
	during, after, err := loadMarked(t, ctx, d, fd, "a:1")
	if err == nil {
		t.Error("a load without an answer succeeded")
	}
	if during != "a:1\n" || !after {
		t.Errorf("marker %q during the load, there after it: %v; want the reference, kept", during, after)
	}
}

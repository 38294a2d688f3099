package imagecache

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/layercast/layercast/nodebin/jobspec"
)

func TestPrepare_SplitsLayersByDigestWithChainIDs(t *testing.T) {
	base, app := bytes.Repeat([]byte("b"), 3000), bytes.Repeat([]byte("a"), 5000)
	d := NewFakeDocker("lab/app:v1", base, app)
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	im, err := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if im.ID != d.ID || len(im.Layers) != 2 || im.Size() != 8000 {
		t.Fatalf("got id %s, %d layers, size %d", im.ID, len(im.Layers), im.Size())
	}
	for i, want := range [][]byte{base, app} {
		l := im.Layers[i]
		got, err := os.ReadFile(l.Path)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("layer %d file differs (err %v)", i, err)
		}
		if l.Digest != digestOf(want) || l.DiffID != l.Digest || l.MediaType != "tar" {
			t.Fatalf("layer %d: %+v", i, l)
		}
	}
	if im.Layers[0].ChainID != im.Layers[0].DiffID {
		t.Fatalf("first chain ID %s, want its diff ID", im.Layers[0].ChainID)
	}
	if want := jobspec.ChainID(im.Layers[0].DiffID, im.Layers[1].DiffID); im.Layers[1].ChainID != want || want == im.Layers[1].DiffID {
		t.Fatalf("second chain ID %s, want %s", im.Layers[1].ChainID, want)
	}
	cfg, err := im.Config()
	if err != nil || digestOf(cfg) != d.ID {
		t.Fatalf("config digest %s, want %s (err %v)", digestOf(cfg), d.ID, err)
	}
}

func TestPrepare_ReusesCacheWithoutExportingAgain(t *testing.T) {
	d := NewFakeDocker("lab/app:v1", []byte("one"), []byte("two"))
	c, _ := New(t.TempDir())
	for range 3 {
		if _, err := c.Prepare(context.Background(), d, "lab/app:v1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if d.Saves != 1 {
		t.Fatalf("exported %d times, want 1", d.Saves)
	}
	// A damaged cache is noticed and the image exported again.
	im, _ := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if err := os.Truncate(im.Layers[1].Path, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(context.Background(), d, "lab/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	if d.Saves != 2 {
		t.Fatalf("exported %d times after damage, want 2", d.Saves)
	}
}

func TestPrepare_PullsMissingImage(t *testing.T) {
	d := NewFakeDocker("reg:5000/app:v2", []byte("x"))
	d.Remove()
	d.Pullable = true
	c, _ := New(t.TempDir())
	if _, err := c.Prepare(context.Background(), d, "reg:5000/app:v2", nil); err != nil {
		t.Fatal(err)
	}
	if d.Pulls != 1 {
		t.Fatalf("pulled %d times, want 1", d.Pulls)
	}
}

func TestPrepare_UnknownImageIsErrNoImage(t *testing.T) {
	d := NewFakeDocker("lab/app:v1", []byte("x"))
	d.Remove()
	c, _ := New(t.TempDir())
	_, err := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if !errors.Is(err, ErrNoImage) {
		t.Fatalf("err = %v, want ErrNoImage", err)
	}
}

func TestPrepare_ImageWithoutLayersIsErrNoLayers(t *testing.T) {
	d := NewFakeDocker("lab/empty:v1")
	c, _ := New(t.TempDir())
	_, err := c.Prepare(context.Background(), d, "lab/empty:v1", nil)
	if !errors.Is(err, ErrNoLayers) {
		t.Fatalf("err = %v, want ErrNoLayers", err)
	}
}

func TestPrepare_AcceptsGzipLayersWithMatchingDiffID(t *testing.T) {
	raw := bytes.Repeat([]byte("layer content "), 100)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	d := NewFakeDockerFiles("lab/gz:v1", []string{digestOf(raw)}, [][]byte{gz.Bytes()})
	c, _ := New(t.TempDir())
	im, err := c.Prepare(context.Background(), d, "lab/gz:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := im.Layers[0]; l.MediaType != "tar+gzip" || l.DiffID != digestOf(raw) || l.Digest != digestOf(gz.Bytes()) {
		t.Fatalf("layer %+v", l)
	}
}

func TestPrepare_RefusesLayerWhoseContentDoesNotMatchDiffID(t *testing.T) {
	d := NewFakeDockerFiles("lab/bad:v1", []string{digestOf([]byte("expected"))}, [][]byte{[]byte("something else")})
	c, _ := New(t.TempDir())
	if _, err := c.Prepare(context.Background(), d, "lab/bad:v1", nil); err == nil {
		t.Fatal("prepared an image whose layer does not match its diff ID")
	}
}

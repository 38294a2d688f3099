package imagecache

import (
	"bytes"
	"context"
	"os"
	"testing"
)

func TestCompress_KeepsGzipOnlyWhereItSaves(t *testing.T) {
	text, random := textLayer(4<<20), randomLayer(4<<20)
	d := NewFakeDocker("lab/app:v1", text, random)
	c, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	im, err := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Compression{CompressAuto, CompressGzip, CompressNone} {
		out, err := c.Compress(context.Background(), im, mode, 2, nil)
		if err != nil {
			t.Fatal(err)
		}
		wantGz := map[Compression][2]bool{CompressAuto: {true, false}, CompressGzip: {true, true}, CompressNone: {false, false}}[mode]
		for i, l := range out.Layers {
			src := im.Layers[i]
			if l.DiffID != src.DiffID || l.ChainID != src.ChainID {
				t.Fatalf("%s: layer %d changed its diff or chain ID", mode, i)
			}
			if gz := l.MediaType == MediaTarGzip; gz != wantGz[i] {
				t.Fatalf("%s: layer %d media type %s", mode, i, l.MediaType)
			}
			if l.UnpackedSize != src.Size {
				t.Fatalf("%s: layer %d unpacked size %d, want %d", mode, i, l.UnpackedSize, src.Size)
			}
			n, err := c.VerifyLayer(context.Background(), l.Digest, l.MediaType, l.DiffID)
			if err != nil || n != src.Size {
				t.Fatalf("%s: layer %d does not unpack to its diff ID: %d bytes, %v", mode, i, n, err)
			}
		}
		t.Logf("%s: text layer %d → %d bytes, random %d → %d", mode, im.Layers[0].Size, out.Layers[0].Size, im.Layers[1].Size, out.Layers[1].Size)
	}
	if im.Layers[0].MediaType != MediaTar {
		t.Fatal("Compress changed the image it was given")
	}
}

func TestCompress_ReusesTheGzipFileOfAnEarlierJob(t *testing.T) {
	text := textLayer(2 << 20)
	d := NewFakeDocker("lab/app:v1", text)
	c, _ := New(t.TempDir())
	im, err := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	status := func(s string) { lines = append(lines, s) }
	first, err := c.Compress(context.Background(), im, CompressAuto, 1, status)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(first.Layers[0].Path)
	again, err := c.Compress(context.Background(), im, CompressAuto, 1, status)
	if err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(again.Layers[0].Path)
	if len(lines) != 1 || !st.ModTime().Equal(st2.ModTime()) || again.Layers[0].Digest != first.Layers[0].Digest {
		t.Fatalf("second job compressed again: status %q", lines)
	}
	b, _ := os.ReadFile(again.Layers[0].Path)
	if bytes.Equal(b, text) {
		t.Fatal("layer file is not compressed")
	}
}

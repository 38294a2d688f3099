package dockerimage_test

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/layercast/layercast/nodebin/dockerimage"
)

// writeLayer writes a layer tar holding one file of size random bytes and
// returns its diff ID.
func writeLayer(tb testing.TB, path string, seed byte, size int64) string {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(f, h))
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blob", Size: size, Mode: 0o644}); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.NewChaCha8([32]byte{seed}), size); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// BenchmarkRealDaemon_Load400MB measures one docker load of a 400 MB
// (incompressible, uncompressed) layer into a fresh daemon, streamed from
// its file the way the node does it.
func BenchmarkRealDaemon_Load400MB(b *testing.B) {
	const size = 400 << 20
	dd := startBench(b)
	c := dd.Client(b)
	d := dockerimage.New(c, nil)
	ctx := b.Context()
	path := filepath.Join(b.TempDir(), "layer")
	diffID := writeLayer(b, path, 1, size)
	config, _ := json.Marshal(map[string]any{"os": "linux", "architecture": "amd64", "rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}}})
	a := dockerimage.Archive{Config: config, RepoTags: []string{"bench:1"}, Layers: []dockerimage.ArchiveLayer{{Name: "l.tar", File: path}}}
	b.SetBytes(size)
	for b.Loop() {
		if err := d.Load(ctx, a); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := c.ImageRemove(ctx, "bench:1", image.RemoveOptions{PruneChildren: true}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

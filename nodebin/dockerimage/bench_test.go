package dockerimage_test

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/image"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/dockerdtest"
)

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
	diffID := dockerdtest.WriteLayer(b, path, 1, size)
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

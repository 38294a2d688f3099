package seed

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/swarm"
)

// BenchmarkSeederToNode1GiB measures one node (nodebin/swarm) downloading
// one layer from the bastion's Seeder over loopback, sha256 check included.
// LAYERCAST_BENCH_BYTES sets the size (default 1 GiB); the piece length is
// AutoPieceLength's.
//
//	go test ./orchestrator/seed -run '^$' -bench SeederToNode -benchtime 3x
func BenchmarkSeederToNode1GiB(b *testing.B) {
	size := int64(1 << 30)
	if v := os.Getenv("LAYERCAST_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		size = n
	}
	dir := b.TempDir()
	path, digest := writeFile(b, dir, size, 9)
	mt, _, err := MakeTorrent(path, 0, "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s, err := NewSeeder(ctx, Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true}, []Layer{{Path: path, Torrent: mt}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(ctx)
	layer := jobspec.Layer{Digest: digest, DiffID: digest, ChainID: digest, Size: size, Torrent: mt}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nodeDir := b.TempDir()
		node, err := swarm.New(ctx, swarm.Config{Dir: nodeDir, AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := node.Download(ctx, []jobspec.Layer{layer}, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		node.Close()
		os.RemoveAll(nodeDir)
		b.StartTimer()
	}
}

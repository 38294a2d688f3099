package swarm

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

func envInt(tb testing.TB, name string, def int64) int64 {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return n
}

// BenchmarkDownload1GiB measures one node downloading one layer from one
// seeder over loopback, verification included. LAYERCAST_BENCH_BYTES sets
// the size (default 1 GiB), LAYERCAST_BENCH_PIECE the piece length.
//
//	go test ./nodebin/swarm -run '^$' -bench Download -benchtime 3x
func BenchmarkDownload1GiB(b *testing.B) {
	size := envInt(b, "LAYERCAST_BENCH_BYTES", 1<<30)
	pieceLen := envInt(b, "LAYERCAST_BENCH_PIECE", 2<<20)
	seedDir := b.TempDir()
	layer := writeLayer(b, seedDir, size, pieceLen, 1)
	seeder := newSeeder(b, seedDir, []jobspec.Layer{layer})
	addr := fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort())
	b.SetBytes(size)
	cpu := startCPUClock()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		ctx := context.Background()
		node, err := New(ctx, Config{Dir: dir, AllowedIPs: loopbackPeers(), Seeders: []string{addr}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := node.Download(ctx, []jobspec.Layer{layer}, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if got := node.Stats().FromSeeder; got < size {
			b.Fatalf("from seeder %d bytes, want %d", got, size)
		}
		node.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(cpu.seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
}

// cpuClock measures the process's CPU time (user+system, both peers of a
// loopback benchmark): unlike wall time it stays meaningful when other
// work shares the machine.
type cpuClock struct{ start float64 }

func startCPUClock() cpuClock { return cpuClock{start: processCPU()} }

func (c cpuClock) seconds() float64 { return processCPU() - c.start }

func processCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

package swarm

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Environment of the leecher child process of BenchmarkLeecherPeakRSS.
const (
	envChildSeeder = "LAYERCAST_RSS_CHILD_SEEDER" // host:port of the parent's seeder
	envChildSize   = "LAYERCAST_RSS_CHILD_SIZE"
)

// TestLeecherChild is the leecher process of BenchmarkLeecherPeakRSS; it is
// skipped unless the benchmark started it.
func TestLeecherChild(t *testing.T) {
	seeder := os.Getenv(envChildSeeder)
	if seeder == "" {
		t.Skip("run by BenchmarkLeecherPeakRSS")
	}
	size, err := strconv.ParseInt(os.Getenv(envChildSize), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Rebuilding the metainfo hashes the file: do it before measuring.
	layer := writeLayer(t, t.TempDir(), size, 2<<20, 3)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("reset peak RSS: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Seeders: []string{seeder}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Download(ctx, []jobspec.Layer{layer}, nil); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PEAK_RSS_KB %d\n", statusKB(t, "VmHWM"))
}

func statusKB(tb testing.TB, field string) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	tb.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// BenchmarkLeecherPeakRSS runs a leecher in its own process, downloading
// LAYERCAST_BENCH_RSS_BYTES (default 300 MB) from a seeder in this one, and
// reports the leecher's peak RSS (VmHWM, reset just before the download).
//
//	go test ./nodebin/swarm -run '^$' -bench LeecherPeakRSS -benchtime 1x
func BenchmarkLeecherPeakRSS(b *testing.B) {
	size := envInt(b, "LAYERCAST_BENCH_RSS_BYTES", 300e6)
	seedDir := b.TempDir()
	layer := writeLayer(b, seedDir, size, 2<<20, 3)
	seeder := newSeeder(b, seedDir, []jobspec.Layer{layer})
	var peak int64
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestLeecherChild$", "-test.v")
		cmd.Env = append(os.Environ(),
			envChildSeeder+"="+fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort()),
			envChildSize+"="+strconv.FormatInt(size, 10),
		)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			b.Fatalf("leecher: %v\n%s", err, out)
		}
		_, after, ok := strings.Cut(string(out), "PEAK_RSS_KB ")
		if !ok {
			b.Fatalf("leecher printed no peak RSS:\n%s", out)
		}
		kb, err := strconv.ParseInt(strings.Fields(after)[0], 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, kb)
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}

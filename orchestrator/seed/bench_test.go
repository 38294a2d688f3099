package seed

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/internal/byterate"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/swarm"
	"github.com/layercast/layercast/tracker"
)

// Environment of the seeder child process of BenchmarkSwarm.
const (
	// envChildLayer lists the layer files, comma-separated; each one's
	// torrent is beside it (torrentPath).
	envChildLayer = "LAYERCAST_SEEDER_CHILD_LAYER"
	envChildRate  = "LAYERCAST_SEEDER_CHILD_RATE"
	// envChildProfile, when set, is where the child writes a CPU profile of
	// its serving.
	envChildProfile = "LAYERCAST_BENCH_SEEDER_CPUPROFILE"
)

// TestSeederChild is the seeder process of BenchmarkSwarm; it is skipped
// unless the benchmark started it. It prints its port, serves until its
// stdin closes, then prints what it sent and the CPU time it spent serving.
func TestSeederChild(t *testing.T) {
	paths := os.Getenv(envChildLayer)
	if paths == "" {
		t.Skip("run by BenchmarkSwarm")
	}
	var layers []Layer
	for _, path := range strings.Split(paths, ",") {
		mt, err := os.ReadFile(torrentPath(path))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, Layer{Path: path, Torrent: mt})
	}
	maxRate, err := strconv.ParseInt(os.Getenv(envChildRate), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSeeder(context.Background(), Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true, MaxRate: maxRate}, layers)
	if err != nil {
		t.Fatal(err)
	}
	if p := os.Getenv(envChildProfile); p != "" {
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu := processCPU()
	fmt.Printf("PORT %d\n", s.Port())
	bufio.NewReader(os.Stdin).ReadString('\n') // until the benchmark closes stdin
	st := s.Stats()
	cpu = processCPU() - cpu
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("STATS %d %d %f\n", st.Uploaded, st.Resent.Total(), cpu)
}

func processCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func benchEnv(b *testing.B, name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func benchInt(b *testing.B, name string, def int64) int64 {
	n, err := strconv.ParseInt(benchEnv(b, name, strconv.FormatInt(def, 10)), 10, 64)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return n
}

// BenchmarkSwarm measures one job on loopback: the seeder, in a child
// process so that its CPU time is its own, serves an image at most
// LAYERCAST_BENCH_RATE MiB/s (default 32; 0 is unlimited) to N nodes
// (nodebin/swarm, in this process) that find each other through a
// tracker, for N in LAYERCAST_BENCH_LEECHERS (default 1,5,10). The image
// is LAYERCAST_BENCH_BYTES long (default 256 MiB, beyond the nodes' 64 MiB
// look-ahead) in LAYERCAST_BENCH_LAYERS layers (default 1), each a torrent
// of its own with AutoPieceLength's pieces, as in a job. It reports the
// seeder's egress ÷ the image, the image's MB/s from start to the last
// node verified, the seeder's CPU seconds per GB sent
// (LAYERCAST_BENCH_SEEDER_CPUPROFILE names a file for its CPU profile),
// and the nodes' CPU seconds per GB received (this process's: the nodes
// and the tracker).
//
// LAYERCAST_BENCH_KILL (a fraction, e.g. 0.7) closes that share of the
// nodes once the nodes together hold half of what they are to receive, as
// hosts that fail mid-job; the others must still finish, and the time is
// theirs.
//
// LAYERCAST_BENCH_LINK (a rate: "4mbit") shapes every link as the lab
// does: the seeder's cap and each node's, each way. It then also reports
// the time to the last node ÷ (image ÷ link), the lab's fleet-time ratio
// without setup and import, for swarms larger than the lab's two cores
// run as hosts:
//
//	go test ./orchestrator/seed -run '^$' -bench Swarm -benchtime 1x
//	LAYERCAST_BENCH_LEECHERS=200 LAYERCAST_BENCH_BYTES=50000000 LAYERCAST_BENCH_LAYERS=5 \
//	  LAYERCAST_BENCH_LINK=4mbit go test ./orchestrator/seed -run '^$' -bench Swarm -benchtime 1x
func BenchmarkSwarm(b *testing.B) {
	size := benchInt(b, "LAYERCAST_BENCH_BYTES", 256<<20)
	rate := benchInt(b, "LAYERCAST_BENCH_RATE", 32) << 20
	link, err := byterate.Parse(benchEnv(b, "LAYERCAST_BENCH_LINK", "0"))
	if err != nil {
		b.Fatalf("LAYERCAST_BENCH_LINK: %v", err)
	}
	if link > 0 {
		rate = link
	}
	img := writeBenchImage(b, size, int(benchInt(b, "LAYERCAST_BENCH_LAYERS", 1)))
	kill, err := strconv.ParseFloat(benchEnv(b, "LAYERCAST_BENCH_KILL", "0"), 64)
	if err != nil || kill < 0 || kill >= 1 {
		b.Fatalf("LAYERCAST_BENCH_KILL: want a fraction in [0, 1), got %q", os.Getenv("LAYERCAST_BENCH_KILL"))
	}
	for _, f := range strings.Split(benchEnv(b, "LAYERCAST_BENCH_LEECHERS", "1,5,10"), ",") {
		n, err := strconv.Atoi(f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("leechers=%d", n), func(b *testing.B) {
			var egress, mbps, cpuPerGB, nodeCPU, conns float64
			for i := 0; i < b.N; i++ {
				r := runBenchJob(b, n, img, rate, link, int(kill*float64(n)))
				egress += r.egress / float64(b.N)
				mbps += r.mbps / float64(b.N)
				cpuPerGB += r.cpuPerGB / float64(b.N)
				nodeCPU += r.nodeCPU / float64(b.N)
				conns += r.connsPerNode / float64(b.N)
			}
			b.ReportMetric(egress, "egress/image")
			b.ReportMetric(mbps, "MB/s")
			b.ReportMetric(cpuPerGB, "seeder-CPU-s/GB")
			b.ReportMetric(nodeCPU, "node-CPU-s/GB")
			b.ReportMetric(conns, "conns-added/node")
			if link > 0 {
				// mbps is size ÷ time; the ideal is one link's time.
				b.ReportMetric(float64(link)/1e6/mbps, "time/ideal")
			}
		})
	}
}

// benchResult is one job: the seeder's egress ÷ the image, the image's
// MB/s to the last node, the seeder's CPU-s per GB sent, and the nodes'
// (this process's) CPU-s per GB received, and the peer connections a
// node set up or accepted.
type benchResult struct{ egress, mbps, cpuPerGB, nodeCPU, connsPerNode float64 }

// benchImage is the image of BenchmarkSwarm: its layers, their torrents'
// info hashes, and the layer files the seeder child serves.
type benchImage struct {
	layers []jobspec.Layer
	hashes []metainfo.Hash
	paths  []string
	size   int64
}

// torrentPath is where a layer file's torrent is written, for the seeder
// child.
func torrentPath(layer string) string { return layer + ".torrent" }

// writeBenchImage writes size pseudo-random bytes as n layers and their
// torrents.
func writeBenchImage(b *testing.B, size int64, n int) *benchImage {
	b.Helper()
	if n < 1 {
		b.Fatalf("LAYERCAST_BENCH_LAYERS: %d", n)
	}
	dir := b.TempDir()
	img := &benchImage{size: size}
	for i := range n {
		lsize := size / int64(n)
		if i == n-1 {
			lsize = size - lsize*int64(n-1)
		}
		path, digest := writeLargeFile(b, dir, lsize, byte(11+i))
		mt, ih, err := MakeTorrent(path, 0, "")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(torrentPath(path), mt, 0o600); err != nil {
			b.Fatal(err)
		}
		img.layers = append(img.layers, jobspec.Layer{Digest: digest, DiffID: digest, ChainID: digest, Size: lsize, Torrent: mt})
		img.hashes = append(img.hashes, ih)
		img.paths = append(img.paths, path)
	}
	return img
}

// runBenchJob runs one job to n nodes and closes the first killed of
// them halfway (LAYERCAST_BENCH_KILL).
func runBenchJob(b *testing.B, n int, img *benchImage, rate, link int64, killed int) benchResult {
	b.StopTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestSeederChild$", "-test.v")
	child.Env = append(os.Environ(), envChildLayer+"="+strings.Join(img.paths, ","), envChildRate+"="+strconv.FormatInt(rate, 10))
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer child.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	port := ""
	for port == "" && lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "PORT "); ok {
			port = v
		}
	}
	if port == "" {
		b.Fatal("seeder child printed no port")
	}

	tr := tracker.New(tracker.Config{Token: "tok", InfoHashes: img.hashes})
	srv := httptest.NewServer(tr)
	defer srv.Close()
	clients := make([]*swarm.Client, n)
	for i := range clients {
		dir, err := os.MkdirTemp(b.TempDir(), "node")
		if err != nil {
			b.Fatal(err)
		}
		c, err := swarm.New(ctx, swarm.Config{Dir: dir, Announce: tr.AnnounceURL(srv.URL), AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{"127.0.0.1:" + port}, MaxRate: link})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	b.StartTimer()
	start, nodeCPU := time.Now(), processCPU()
	killedAt := make(chan time.Duration, 1)
	if killed > 0 {
		victims, stop := context.WithCancel(ctx)
		defer stop()
		go func() { downloadAll(victims, clients[:killed], img.layers) }()
		go func() { killedAt <- killHalfway(ctx, stop, clients[:killed], clients, img.size) }()
	}
	for i, err := range downloadAll(ctx, clients[killed:], img.layers) {
		if err != nil {
			b.Fatalf("leecher %d: %v", killed+i, err)
		}
	}
	elapsed := time.Since(start)
	if killed > 0 {
		at := <-killedAt
		b.Logf("%d of %d nodes closed at %v, once the nodes held half of the image each on average; the other %d finished %v later",
			killed, n, at.Round(time.Millisecond), n-killed, (elapsed - at).Round(time.Millisecond))
		n -= killed
	}
	nodeCPU = processCPU() - nodeCPU
	b.StopTimer()
	stdin.Close()
	var uploaded, resent int64
	var cpu float64
	for lines.Scan() {
		if v, ok := strings.CutPrefix(lines.Text(), "STATS "); ok {
			if _, err := fmt.Sscan(v, &uploaded, &resent, &cpu); err != nil {
				b.Fatalf("seeder stats %q: %v", v, err)
			}
		}
	}
	if err := child.Wait(); err != nil {
		b.Fatalf("seeder child: %v", err)
	}
	received := float64(receivedBy(clients)) / 1e9 // the closed nodes' too
	var conns int64
	for _, c := range clients {
		conns += c.ConnsAdded()
	}
	b.Logf("%d leechers × %d MiB in %d layers, seeder at %s, nodes at %s: %v, egress %.3f × image (%d MiB resent), seeder %.2f CPU-s, nodes %.1f CPU-s (%.1f per GB received)",
		n, img.size>>20, len(img.layers), byterate.Format(rate), byterate.Format(link), elapsed.Round(time.Millisecond), float64(uploaded)/float64(img.size), resent>>20, cpu, nodeCPU, nodeCPU/received)
	b.StartTimer()
	return benchResult{
		egress:   float64(uploaded) / float64(img.size),
		mbps:     float64(img.size) / 1e6 / elapsed.Seconds(),
		cpuPerGB: cpu / (float64(uploaded) / 1e9),
		nodeCPU:  nodeCPU / received,
		// per node of the job, the closed ones included
		connsPerNode: float64(conns) / float64(len(clients)),
	}
}

// killHalfway closes victims (and stops their downloads) once all the
// clients together have received half of size each, and returns how long
// that took.
func killHalfway(ctx context.Context, stop func(), victims, all []*swarm.Client, size int64) time.Duration {
	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if 2*receivedBy(all) >= int64(len(all))*size {
			break
		}
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-tick.C:
		}
	}
	at := time.Since(start)
	for _, c := range victims {
		c.Close()
	}
	stop()
	return at
}

// receivedBy is the useful bytes the clients received, from the seeder and
// from their peers.
func receivedBy(clients []*swarm.Client) int64 {
	var got int64
	for _, c := range clients {
		st := c.Stats()
		got += st.FromPeers + st.FromSeeder
	}
	return got
}

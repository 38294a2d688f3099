package swarm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Environment of the bastion child process of BenchmarkSwarm.
const (
	envBastionDir  = "LAYERCAST_SWARM_BASTION_DIR"  // holds layers.json and the layer files
	envBastionRate = "LAYERCAST_SWARM_BASTION_RATE" // bytes/s each way; 0: unlimited
	// envBastionDoneInterval is the announce interval, in seconds, the
	// tracker gives peers with left=0 (others get 1 s, as the job's tracker
	// does today).
	envBastionDoneInterval = "LAYERCAST_SWARM_BASTION_DONE_INTERVAL"
)

// limitLink makes a client's anacrolix config pace its piece data like a
// host's link shaped to bytesPerSec each way.
func limitLink(bytesPerSec int64) func(*torrent.ClientConfig) {
	if bytesPerSec <= 0 {
		return nil
	}
	return func(cc *torrent.ClientConfig) {
		// Bursts: the upload limiter's is also the longest request the
		// client serves, so keep it at the request buffer's size.
		cc.UploadRateLimiter = rate.NewLimiter(rate.Limit(bytesPerSec), cc.MaxAllocPeerRequestDataPerConn)
		cc.DownloadRateLimiter = rate.NewLimiter(rate.Limit(bytesPerSec), 1<<20)
	}
}

// TestSwarmBastionChild is the bastion of BenchmarkSwarm (a seeder and a
// tracker) in a process of its own, so the benchmark's CPU is the nodes'
// alone. It is skipped unless the benchmark started it; it serves until its
// stdin closes, then prints what it sent.
func TestSwarmBastionChild(t *testing.T) {
	dir := os.Getenv(envBastionDir)
	if dir == "" {
		t.Skip("run by BenchmarkSwarm")
	}
	b, err := os.ReadFile(filepath.Join(dir, "layers.json"))
	if err != nil {
		t.Fatal(err)
	}
	var layers []jobspec.Layer
	if err := json.Unmarshal(b, &layers); err != nil {
		t.Fatal(err)
	}
	bps, _ := strconv.ParseInt(os.Getenv(envBastionRate), 10, 64)
	doneEvery, _ := strconv.Atoi(os.Getenv(envBastionDoneInterval))
	tr := newTestTracker(func(left int64) time.Duration {
		if left == 0 && doneEvery > 0 {
			return time.Duration(doneEvery) * time.Second
		}
		return time.Second
	})
	announce := tr.serve(t)
	s, err := New(context.Background(), Config{Dir: dir, AllowedIPs: loopbackPeers(), tune: limitLink(bps)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Seed(layers); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BASTION 127.0.0.1:%d %s\n", s.LocalPort(), announce)
	io.Copy(io.Discard, os.Stdin)
	all, done, _ := tr.counts()
	fmt.Printf("BASTION_SENT %d ANNOUNCES %d DONE_ANNOUNCES %d\n", s.uploaded(), all, done)
	s.Close()
}

// bastionProc is the running bastion child.
type bastionProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	out      *bufio.Scanner
	seeder   string
	announce string
}

func startBastion(b *testing.B, dir string, bps int64, doneInterval int) *bastionProc {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSwarmBastionChild$", "-test.v")
	cmd.Env = append(os.Environ(),
		envBastionDir+"="+dir,
		envBastionRate+"="+strconv.FormatInt(bps, 10),
		envBastionDoneInterval+"="+strconv.Itoa(doneInterval),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &bastionProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	b.Cleanup(func() {
		p.stdin.Close()
		if p.cmd.ProcessState == nil {
			p.cmd.Wait()
		}
	})
	for p.out.Scan() {
		if f := strings.Fields(p.out.Text()); len(f) == 3 && f[0] == "BASTION" {
			p.seeder, p.announce = f[1], f[2]
			return p
		}
	}
	b.Fatal("the bastion child printed no address")
	return nil
}

// stop ends the child and returns its CPU seconds, the bytes it sent and
// the announces its tracker answered (all, and from peers with left=0).
func (p *bastionProc) stop(b *testing.B) (cpu float64, sent int64, announces, doneAnnounces int) {
	b.Helper()
	p.stdin.Close()
	for p.out.Scan() {
		fmt.Sscanf(p.out.Text(), "BASTION_SENT %d ANNOUNCES %d DONE_ANNOUNCES %d", &sent, &announces, &doneAnnounces)
	}
	if err := p.cmd.Wait(); err != nil {
		b.Fatalf("bastion child: %v", err)
	}
	ru := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds(), sent, announces, doneAnnounces
}

// BenchmarkSwarm measures what nodes pay in a swarm shaped like a lab job:
// a bastion (seeder and tracker, in a child process so that its CPU is not
// counted) and LAYERCAST_BENCH_NODES nodes (default 10) in this process,
// every client paced to LAYERCAST_BENCH_MBIT (default 40) each way like a
// host's shaped link. The nodes download LAYERCAST_BENCH_BYTES (default
// 250 MB) in 5 layers of LAYERCAST_BENCH_PIECE pieces (default 256 KiB, the
// bastion's choice for 50 MB layers), reading Stats every 250 ms and
// encoding it as the node's progress loop does; then they seed for
// LAYERCAST_BENCH_IDLE seconds (default 10) while nobody downloads.
// LAYERCAST_BENCH_DONE_INTERVAL (seconds, default 1) is the tracker's
// announce interval for peers that have a whole layer;
// LAYERCAST_BENCH_CONNS overrides the nodes' connections per torrent;
// LAYERCAST_BENCH_TIMEOUT (seconds) the bound of the run.
//
// Metrics: node-cpu-s/GB, this process's CPU over the download ÷ bytes the
// nodes received; idle-cpu-ms/node-s, its CPU while seeding idle ÷ nodes ÷
// seconds; bastion-egress/size; bastion-cpu-s/GB sent; conns-added/node,
// the peer connections a node set up or accepted over the run. Take a profile of the
// nodes with -cpuprofile.
//
//	go test ./nodebin/swarm -run '^$' -bench Swarm -benchtime 1x -cpuprofile /tmp/swarm.prof
func BenchmarkSwarm(b *testing.B) {
	nodes := int(envInt(b, "LAYERCAST_BENCH_NODES", 10))
	size := envInt(b, "LAYERCAST_BENCH_BYTES", 250e6)
	pieceLen := envInt(b, "LAYERCAST_BENCH_PIECE", 256<<10)
	bps := envInt(b, "LAYERCAST_BENCH_MBIT", 40) * 1e6 / 8
	idle := time.Duration(envInt(b, "LAYERCAST_BENCH_IDLE", 10)) * time.Second
	doneInterval := int(envInt(b, "LAYERCAST_BENCH_DONE_INTERVAL", 1))

	seedDir := b.TempDir()
	var layers []jobspec.Layer
	const numLayers = 5
	for i := range numLayers {
		layers = append(layers, writeLayer(b, seedDir, size/numLayers, pieceLen, uint64(100+i)))
	}
	js, err := json.Marshal(layers)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seedDir, "layers.json"), js, 0o600); err != nil {
		b.Fatal(err)
	}
	bastion := startBastion(b, seedDir, bps, doneInterval)
	// Bound the whole run: 20× the time one link needs for everything, or
	// LAYERCAST_BENCH_TIMEOUT seconds (100 nodes in one process on 2 cores
	// measure the CPU, not the links).
	timeout := 20*time.Duration(float64(size)/float64(max(bps, 1))*float64(time.Second)) + idle + time.Minute
	if s := envInt(b, "LAYERCAST_BENCH_TIMEOUT", 0); s > 0 {
		timeout = time.Duration(s) * time.Second
	}

	var dlCPU, idleCPU, received, downloadSecs float64
	// connsAdded sums the peer connections the nodes set up (both ends of
	// a node-to-node one, Client.ConnsAdded); conns tallies what the
	// closed ones carried.
	var connsAdded int64
	conns := newConnTally()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		clients := make([]*Client, nodes)
		for i := range clients {
			lim := limitLink(bps)
			c, err := New(ctx, Config{
				Dir: b.TempDir(), AllowedIPs: loopbackPeers(), Announce: bastion.announce, Seeders: []string{bastion.seeder},
				tune: func(cc *torrent.ClientConfig) {
					conns.watch(cc)
					if lim != nil {
						lim(cc)
					}
					if n := envInt(b, "LAYERCAST_BENCH_CONNS", 0); n > 0 {
						cc.EstablishedConnsPerTorrent = int(n)
					}
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			clients[i] = c
		}
		stopStats := pollStats(clients)
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU()
		var g errgroup.Group
		for _, c := range clients {
			g.Go(func() error { return c.Download(ctx, layers, nil) })
		}
		if err := g.Wait(); err != nil {
			b.Fatal(err)
		}
		cpu1 := processCPU()
		downloadSecs += time.Since(start).Seconds()
		b.StopTimer()
		for _, c := range clients {
			st := c.Stats()
			received += float64(st.FromSeeder + st.FromPeers)
		}
		time.Sleep(idle)
		cpu2 := processCPU()
		stopStats()
		dlCPU += cpu1 - cpu0
		idleCPU += cpu2 - cpu1
		for _, c := range clients {
			connsAdded += c.ConnsAdded()
			c.Close()
		}
		cancel()
		b.StartTimer()
	}
	b.StopTimer()
	bcpu, sent, announces, doneAnnounces := bastion.stop(b)
	n := float64(b.N)
	b.ReportMetric(dlCPU/(received/1e9), "node-cpu-s/GB")
	unused, short := conns.counts()
	b.ReportMetric(float64(connsAdded)/n/float64(nodes), "conns-added/node")
	b.ReportMetric(float64(unused)/n/float64(nodes), "conns-unused/node")
	b.ReportMetric(float64(short)/n/float64(nodes), "conns-short/node")
	b.ReportMetric(1000*idleCPU/n/float64(nodes)/idle.Seconds(), "idle-cpu-ms/node-s")
	b.ReportMetric(downloadSecs/n, "download-s")
	b.ReportMetric(float64(sent)/n/float64(size), "bastion-egress/size")
	b.ReportMetric(bcpu/(float64(sent)/1e9), "bastion-cpu-s/GB")
	b.ReportMetric(float64(announces)/n, "announces")
	b.ReportMetric(float64(doneAnnounces)/n, "announces-left0")
}

// connTally counts, of a swarm's peer connections that closed, the ones
// that carried no block either way (unused) and the ones that lived under
// connShortLife (short). The callbacks run under the torrent client's
// lock, so they read no connection stats.
type connTally struct {
	mu            sync.Mutex
	unused, short int
	open          map[*torrent.Peer]*connUse
}

// connUse is what one open connection did.
type connUse struct {
	since time.Time
	used  bool // a useful block came, or the peer requested one
}

// connShortLife is the life under which a closed connection counts as
// short: less than a block's time on a slow link.
const connShortLife = 5 * time.Second

func newConnTally() *connTally { return &connTally{open: make(map[*torrent.Peer]*connUse)} }

// watch adds the tally's callbacks to a client's config.
func (ct *connTally) watch(cc *torrent.ClientConfig) {
	used := func(p *torrent.Peer) {
		ct.mu.Lock()
		if u := ct.open[p]; u != nil {
			u.used = true
		}
		ct.mu.Unlock()
	}
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, func(pc *torrent.PeerConn) {
		ct.mu.Lock()
		ct.open[&pc.Peer] = &connUse{since: time.Now()}
		ct.mu.Unlock()
	})
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, func(e torrent.ReceivedUsefulDataEvent) { used(e.Peer) })
	cc.Callbacks.ReceivedRequested = append(cc.Callbacks.ReceivedRequested, func(e torrent.PeerMessageEvent) { used(e.Peer) })
	cc.Callbacks.PeerConnClosed = func(pc *torrent.PeerConn) {
		ct.mu.Lock()
		defer ct.mu.Unlock()
		u := ct.open[&pc.Peer]
		if u == nil {
			return // closed before it was added
		}
		delete(ct.open, &pc.Peer)
		if !u.used {
			ct.unused++
		}
		if time.Since(u.since) < connShortLife {
			ct.short++
		}
	}
}

func (ct *connTally) counts() (unused, short int) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.unused, ct.short
}

// pollStats reads every client's Stats every 250 ms and encodes it, as
// the node's progress loop does, until the returned stop is called.
func pollStats(clients []*Client) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			enc := json.NewEncoder(io.Discard)
			tick := time.NewTicker(250 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					p := c.Stats()
					enc.Encode(jobspec.Event{Kind: jobspec.EventProgress, Progress: &p})
				}
			}
		})
	}
	return sync.OnceFunc(func() { close(done); wg.Wait() })
}

package seed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/swarm"
	"github.com/layercast/layercast/tracker"
)

// testJob is a job's bastion side in one process: one layer, a tracker and
// the seeder, on loopback.
type testJob struct {
	seeder   *Seeder
	layer    jobspec.Layer
	announce string
	size     int64
}

// newTestJob writes a layer of size pseudo-random bytes and serves it.
func newTestJob(tb testing.TB, size int64, cfg Config) *testJob {
	tb.Helper()
	dir := tb.TempDir()
	path, digest := writeLargeFile(tb, dir, size, 7)
	mt, ih, err := MakeTorrent(path, 0, "")
	if err != nil {
		tb.Fatal(err)
	}
	tr := tracker.New(tracker.Config{Token: "tok", InfoHashes: []metainfo.Hash{ih}})
	srv := httptest.NewServer(tr)
	tb.Cleanup(srv.Close)
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.AllowLoopback = true
	s, err := NewSeeder(context.Background(), cfg, []Layer{{Path: path, Torrent: mt}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			tb.Errorf("close seeder: %v", err)
		}
	})
	return &testJob{
		seeder:   s,
		layer:    jobspec.Layer{Digest: digest, DiffID: digest, ChainID: digest, Size: size, Torrent: mt},
		announce: tr.AnnounceURL(srv.URL),
		size:     size,
	}
}

// writeLargeFile is writeFile without holding the whole file in memory.
func writeLargeFile(tb testing.TB, dir string, size int64, seed byte) (string, string) {
	tb.Helper()
	tmp := filepath.Join(dir, "tmp")
	f, err := os.Create(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{seed})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, size)); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(dir, sum)
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	return path, "sha256:" + sum
}

// leecher starts a node (nodebin/swarm) that finds peers through the job's
// tracker and is given the seeder's address, as the orchestrator does.
func (j *testJob) leecher(tb testing.TB) *swarm.Client {
	tb.Helper()
	c, err := swarm.New(context.Background(), swarm.Config{
		Dir:        tb.TempDir(),
		Announce:   j.announce,
		AllowedIPs: []string{"127.0.0.1"},
		Seeders:    []string{fmt.Sprintf("127.0.0.1:%d", j.seeder.Port())},
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// download runs Download on every client at once and returns each one's
// error; a nil error means the node verified the layer's sha256.
func (j *testJob) download(ctx context.Context, clients []*swarm.Client) []error {
	return downloadAll(ctx, clients, []jobspec.Layer{j.layer})
}

// downloadAll has every client download the layers at once, checking that
// each layer file is named by its digest; it returns each client's error.
func downloadAll(ctx context.Context, clients []*swarm.Client, layers []jobspec.Layer) []error {
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			errs[i] = c.Download(ctx, layers, func(l jobspec.Layer, path string) {
				if path != "" && filepath.Base(path) != strings.TrimPrefix(l.Digest, "sha256:") {
					errs[i] = fmt.Errorf("layer written to %s", path)
				}
			})
		})
	}
	wg.Wait()
	return errs
}

// egress is the seeder's upload so far divided by the layer's size.
func (j *testJob) egress() float64 {
	return float64(j.seeder.Stats().Uploaded) / float64(j.size)
}

// swarmSize is the layer size of the swarm tests: above the 64 MiB a node
// looks ahead (anacrolix's MaxUnverifiedBytes), so that the nodes' piece
// window matters, and small enough for a test (384 pieces of 256 KiB).
const swarmSize = 96 << 20

// swarmRate caps the seeder so that it is the swarm's bottleneck on
// loopback.
const swarmRate = 16 << 20

func TestSeeder_EachPieceLeavesAboutOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm of leechers")
	}
	for _, n := range []int{5, 10} {
		t.Run(fmt.Sprintf("%d leechers", n), func(t *testing.T) {
			j := newTestJob(t, swarmSize, Config{MaxRate: swarmRate})
			clients := make([]*swarm.Client, n)
			for i := range clients {
				clients[i] = j.leecher(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			start := time.Now()
			for i, err := range j.download(ctx, clients) {
				if err != nil {
					t.Errorf("leecher %d: %v", i, err)
				}
			}
			st := j.seeder.Stats()
			t.Logf("%d leechers × %d MiB in %v: egress %.2f × layer, resent %d MiB", n, swarmSize>>20, time.Since(start).Round(time.Millisecond), j.egress(), st.Resent.Total()>>20)
			if e := j.egress(); e > 1.3 {
				t.Errorf("seeder sent %.2f × the layer, want at most 1.3", e)
			}
		})
	}
}

func TestSeeder_LoneLeecherGetsEverything(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm of leechers")
	}
	j := newTestJob(t, swarmSize, Config{MaxRate: 2 * swarmRate})
	node := j.leecher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	if err := j.download(ctx, []*swarm.Client{node})[0]; err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	// The seeder counts a block once its write returned, which may be
	// after the leecher verified the piece and finished.
	wantUploaded(t, j.seeder, swarmSize)
	st := j.seeder.Stats()
	t.Logf("one leecher: %d MiB in %v, %.1f MiB/s (max rate %d MiB/s), egress %.2f", swarmSize>>20, d.Round(time.Millisecond), float64(swarmSize)/(1<<20)/d.Seconds(), 2*swarmRate>>20, j.egress())
	if st.Uploaded != swarmSize || st.Resent.Total() != 0 {
		t.Errorf("seeder sent %d bytes (%d again) for a %d-byte layer to its only leecher", st.Uploaded, st.Resent.Total(), swarmSize)
	}
}

func TestSeeder_RescuesALeecherWhosePeersVanish(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm of leechers")
	}
	j := newTestJob(t, swarmSize, Config{MaxRate: swarmRate})
	victim := j.leecher(t)
	others := []*swarm.Client{j.leecher(t), j.leecher(t), j.leecher(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	othersCtx, stopOthers := context.WithCancel(ctx)
	defer stopOthers()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		j.download(othersCtx, others) // they are closed before they finish
	}()
	errc := make(chan error, 1)
	go func() { errc <- j.download(ctx, []*swarm.Client{victim})[0] }()

	// Once the victim holds a quarter of the layer, its peers vanish.
	for layerDone(victim) < swarmSize/4 {
		select {
		case err := <-errc:
			t.Fatalf("victim finished before its peers vanished: %v", err)
		case <-ctx.Done():
			t.Fatal("victim made no progress")
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopOthers()
	for _, c := range others {
		c.Close()
	}
	wg.Wait()
	vanished := time.Now()
	before := victim.Stats()
	if err := <-errc; err != nil {
		t.Fatalf("victim: %v", err)
	}
	after := victim.Stats()
	t.Logf("peers vanished at %d MiB; the victim got %d MiB more from the seeder in %v; seeder egress %.2f, resent %d MiB",
		layerDoneOf(before)>>20, (after.FromSeeder-before.FromSeeder)>>20, time.Since(vanished).Round(time.Millisecond), j.egress(), j.seeder.Stats().Resent.Total()>>20)
	if after.FromSeeder == before.FromSeeder {
		t.Error("the victim finished without the seeder's help")
	}
}

func TestSeeder_RescuesALeecherWhosePeersAreGone(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm of leechers")
	}
	j := newTestJob(t, swarmSize, Config{MaxRate: 2 * swarmRate})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Two hosts get every piece, then vanish: the seeder has sent each
	// piece once and the last host has nobody else to get them from.
	first := []*swarm.Client{j.leecher(t), j.leecher(t)}
	for i, err := range j.download(ctx, first) {
		if err != nil {
			t.Fatalf("leecher %d: %v", i, err)
		}
	}
	for _, c := range first {
		c.Close()
	}
	sentBefore := j.seeder.Stats().Uploaded
	start := time.Now()
	if err := j.download(ctx, []*swarm.Client{j.leecher(t)})[0]; err != nil {
		t.Fatal(err)
	}
	st := j.seeder.Stats()
	t.Logf("the last host got %d MiB from the seeder in %v (after %d MiB to the first two)", (st.Uploaded-sentBefore)>>20, time.Since(start).Round(time.Millisecond), sentBefore>>20)
	if st.Resent.Total() < swarmSize/2 {
		t.Errorf("seeder sent %d bytes again, want the layer (it must have come from the seeder)", st.Resent.Total())
	}
}

// layerDone is how much of its one layer a leecher has verified pieces of.
func layerDone(c *swarm.Client) int64 { return layerDoneOf(c.Stats()) }

func layerDoneOf(p jobspec.Progress) int64 {
	if len(p.Layers) == 0 {
		return 0
	}
	return p.Layers[0].Done
}

func TestSeeder_ServesAnImageOfSeveralLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("swarm of leechers")
	}
	// Nodes connect for every layer at once but start them in image order
	// (nodebin/swarm's startAhead), so connections wait uninterested.
	sizes := []int64{40 << 20, 3 << 20, 72 << 20}
	dir := t.TempDir()
	var seedLayers []Layer
	var layers []jobspec.Layer
	var hashes []metainfo.Hash
	var total int64
	for i, size := range sizes {
		path, digest := writeLargeFile(t, dir, size, byte(20+i))
		mt, ih, err := MakeTorrent(path, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		seedLayers = append(seedLayers, Layer{Path: path, Torrent: mt})
		layers = append(layers, jobspec.Layer{Digest: digest, DiffID: digest, ChainID: digest, Size: size, Torrent: mt})
		hashes = append(hashes, ih)
		total += size
	}
	tr := tracker.New(tracker.Config{Token: "tok", InfoHashes: hashes})
	srv := httptest.NewServer(tr)
	defer srv.Close()
	s, err := NewSeeder(context.Background(), Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true, MaxRate: swarmRate}, seedLayers)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	errs := make(chan error, 5)
	for range 5 {
		c, err := swarm.New(ctx, swarm.Config{Dir: t.TempDir(), Announce: tr.AnnounceURL(srv.URL), AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			done := 0
			err := c.Download(ctx, layers, func(jobspec.Layer, string) { done++ })
			if err == nil && done != len(layers) {
				err = fmt.Errorf("%d of %d layers done", done, len(layers))
			}
			errs <- err
		}()
	}
	for range 5 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	st := s.Stats()
	e := float64(st.Uploaded) / float64(total)
	t.Logf("5 leechers × %d layers (%d MiB): egress %.2f × image, resent %d MiB", len(layers), total>>20, e, st.Resent.Total()>>20)
	if e > 1.3 {
		t.Errorf("seeder sent %.2f × the image, want at most 1.3", e)
	}
}

package seed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/swarm"
	"github.com/layercast/layercast/tracker"
)

func writeFile(t testing.TB, dir string, size int64, seed byte) (string, string) {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, "sha256:" + hex.EncodeToString(sum[:])
}

func TestAutoPieceLength(t *testing.T) {
	for _, tc := range []struct{ size, want int64 }{
		{1, MinPieceLength},
		{100 << 20, MinPieceLength},
		{1 << 30, 1 << 30 / targetPieces},
		{64 << 30, MaxPieceLength},
	} {
		if got := AutoPieceLength(tc.size); got != tc.want {
			t.Errorf("AutoPieceLength(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
}

func TestMakeTorrent_DescribesTheFile(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeFile(t, dir, 1<<20+5, 1)
	b, ih, err := MakeTorrent(path, 256<<10, "http://bastion:1/announce/tok")
	if err != nil {
		t.Fatal(err)
	}
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	if mi.HashInfoBytes() != ih {
		t.Errorf("infohash %v, metainfo says %v", ih, mi.HashInfoBytes())
	}
	if info.TotalLength() != 1<<20+5 || info.NumPieces() != 5 || info.PieceLength != 256<<10 || info.IsDir() {
		t.Errorf("info: length %d pieces %d piece length %d", info.TotalLength(), info.NumPieces(), info.PieceLength)
	}
	if mi.Announce != "http://bastion:1/announce/tok" {
		t.Errorf("announce %q", mi.Announce)
	}
	if _, _, err := MakeTorrent(path, 100_000, ""); err == nil {
		t.Error("piece length 100000 accepted")
	}
}

func TestSeeder_RefusesFileThatDoesNotMatchItsTorrent(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeFile(t, dir, 1<<20, 2)
	mt, _, err := MakeTorrent(path, 256<<10, "")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := writeFile(t, dir, 1<<20, 3)
	_, err = NewSeeder(context.Background(), Config{ListenAddr: "127.0.0.1:0"}, []Layer{{Path: other, Torrent: mt}})
	if !errors.Is(err, ErrFileMismatch) {
		t.Errorf("seeding another file: err %v, want ErrFileMismatch", err)
	}
}

// startJob starts a tracker and a seeder for one layer of size bytes.
func startJob(t *testing.T, size int64, cfg Config) (*Seeder, jobspec.Layer, string, *tracker.Tracker) {
	t.Helper()
	dir := t.TempDir()
	path, digest := writeFile(t, dir, size, 4)
	mt, ih, err := MakeTorrent(path, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	tr := tracker.New(tracker.Config{Token: "tok", InfoHashes: []metainfo.Hash{ih}})
	srv := httptest.NewServer(tr)
	t.Cleanup(srv.Close)
	s, err := NewSeeder(context.Background(), cfg, []Layer{{Path: path, Torrent: mt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	layer := jobspec.Layer{Digest: digest, DiffID: digest, ChainID: digest, Size: size, Torrent: mt}
	return s, layer, tr.AnnounceURL(srv.URL), tr
}

func TestSeeder_ServesANodeGivenItsAddress(t *testing.T) {
	const size = 5 << 20
	s, layer, announce, _ := startJob(t, size, Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := swarm.New(ctx, swarm.Config{Dir: t.TempDir(), Announce: announce, AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	var paths []string
	if err := node.Download(ctx, []jobspec.Layer{layer}, func(_ jobspec.Layer, p string) { paths = append(paths, p) }); err != nil {
		t.Fatal(err)
	}
	if len(paths) != 1 || filepath.Base(paths[0]) != layer.Digest[len("sha256:"):] {
		t.Fatalf("done paths %v", paths)
	}
	wantUploaded(t, s, size)
}

// wantUploaded fails t unless the seeder counts at least size bytes sent
// within 10 s. It counts a block once its write returned, which may be
// after the node verified the piece.
func wantUploaded(t *testing.T, s *Seeder, size int64) {
	t.Helper()
	var up int64
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if up = s.Stats().Uploaded; up >= size {
			return
		}
	}
	t.Errorf("seeder uploaded %d bytes, want at least %d", up, size)
}

func TestSeeder_RefusesPeersOutsideAllowedIPs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      Config
		wantData bool
	}{
		{"loopback allowed", Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true}, true},
		{"only another host allowed", Config{ListenAddr: "127.0.0.1:0", AllowedIPs: []string{"10.1.2.3"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, layer, _, _ := startJob(t, 1<<20, tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			node, err := swarm.New(ctx, swarm.Config{Dir: t.TempDir(), AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			err = node.Download(ctx, []jobspec.Layer{layer}, nil)
			if tc.wantData && err != nil {
				t.Fatalf("download: %v", err)
			}
			if !tc.wantData {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("download from a seeder that refuses us: %v", err)
				}
				if st := s.Stats(); st.Uploaded != 0 || st.Peers != 0 {
					t.Errorf("seeder served a refused peer: %+v", st)
				}
			}
		})
	}
}

// A held seeder sends nothing until every hold of the pause is released
// or the pause's bound (its first hold's max) has passed; then the node
// gets its layer as usual.
func TestSeeder_HoldPausesBlocksUntilReleasedOrExpired(t *testing.T) {
	const size = 2 << 20
	for _, tc := range []struct {
		name  string
		bound time.Duration // the first hold's max
	}{{"released", time.Minute}, {"expired", 600 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			s, layer, announce, _ := startJob(t, size, Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			first := s.Hold(tc.bound)
			second := s.Hold(time.Minute) // joins the first's pause
			node, err := swarm.New(ctx, swarm.Config{Dir: t.TempDir(), Announce: announce, AllowedIPs: []string{"127.0.0.1"}, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", s.Port())}})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			done := make(chan error, 1)
			go func() { done <- node.Download(ctx, []jobspec.Layer{layer}, func(jobspec.Layer, string) {}) }()
			// Within the pause budget (MaxPauses) and the shorter bound.
			time.Sleep(300 * time.Millisecond)
			first() // one hold still in force
			first() // a second call changes nothing
			time.Sleep(200 * time.Millisecond)
			if up := s.Stats().Uploaded; up != 0 {
				t.Fatalf("a held seeder sent %d bytes", up)
			}
			if tc.bound == time.Minute {
				second()
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			wantUploaded(t, s, size)
		})
	}
}

// The pauses draw on a budget: a hold never released pauses the seeder
// for the whole budget once, and right after that only for what the time
// since refilled.
func TestSeeder_HoldsPauseTheSeederWithinABudget(t *testing.T) {
	s, _, _, _ := startJob(t, 1<<20, Config{ListenAddr: "127.0.0.1:0", AllowLoopback: true})
	pause := func() time.Duration {
		t.Helper()
		release := s.Hold(time.Minute)
		defer release()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*MaxPauses)
		defer cancel()
		if err := s.waitUnheld(ctx); err != nil {
			t.Fatalf("still paused after %v", time.Since(start))
		}
		return time.Since(start)
	}
	if p := pause(); p < MaxPauses*9/10 || p > MaxPauses*3/2 {
		t.Errorf("first pause %v, want the budget, %v", p, MaxPauses)
	}
	if p := pause(); p > MaxPauses/4 {
		t.Errorf("a pause right after the budget was spent lasted %v", p)
	}
}

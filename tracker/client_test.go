package tracker

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// newLoopbackClient is a stock anacrolix client that can find peers only
// through trackers: no DHT, no PEX, loopback only.
func newLoopbackClient(t *testing.T, dir string) *torrent.Client {
	t.Helper()
	cfg := torrent.NewDefaultClientConfig()
	cfg.DataDir = dir
	cfg.SetListenAddr("127.0.0.1:0")
	cfg.NoDHT = true
	cfg.DisablePEX = true
	cfg.DisableUTP = true
	cfg.DisableIPv6 = true
	cfg.NoDefaultPortForwarding = true
	cfg.DisableWebtorrent = true
	cfg.DisableWebseeds = true
	cfg.Seed = true
	cl, err := torrent.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func TestTracker_RealClientsFindEachOtherThroughIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	seedDir := t.TempDir()
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	if err := os.WriteFile(filepath.Join(seedDir, "layer"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	info := metainfo.Info{PieceLength: 256 << 10}
	if err := info.BuildFromFilePath(filepath.Join(seedDir, "layer")); err != nil {
		t.Fatal(err)
	}
	mi := metainfo.MetaInfo{InfoBytes: bencode.MustMarshal(info)}
	ih := mi.HashInfoBytes()

	// Configured as a job would be: three hosts (all on loopback here, as
	// under --tunnel), three peers at most.
	loopback := []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ih}, MaxPeers: 3, AllowedIPs: loopback})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- Serve(serveCtx, ln, tr, ServeConfig{MaxConns: 8, AllowedIPs: loopback}) }()
	defer func() {
		stopServing()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	mi.Announce = tr.AnnounceURL("http://" + ln.Addr().String())

	seeder := newLoopbackClient(t, seedDir)
	st, err := seeder.AddTorrent(&mi)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-st.Complete().On():
	case <-ctx.Done():
		t.Fatal("seeder did not verify its data")
	}

	var leechers []*torrent.Torrent
	var dirs []string
	for range 2 {
		dir := t.TempDir()
		lt, err := newLoopbackClient(t, dir).AddTorrent(&mi)
		if err != nil {
			t.Fatal(err)
		}
		lt.DownloadAll()
		leechers = append(leechers, lt)
		dirs = append(dirs, dir)
	}
	for i, lt := range leechers {
		select {
		case <-lt.Complete().On():
		case <-ctx.Done():
			t.Fatalf("leecher %d got %d of %d bytes", i, lt.BytesCompleted(), lt.Length())
		}
		got, err := os.ReadFile(filepath.Join(dirs[i], "layer"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("leecher %d data differs", i)
		}
	}
	ports := map[uint16]bool{}
	for _, p := range tr.Peers(ih) {
		ports[p.Addr.Port()] = true
	}
	if len(ports) != 3 {
		t.Errorf("tracker knows ports %v, want the 3 clients", ports)
	}
}

package swarm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
)

func TestDownload_VerifiesLayersAndCountsSeederBytes(t *testing.T) {
	seedDir := t.TempDir()
	layers := []jobspec.Layer{
		writeLayer(t, seedDir, 3<<20+17, 256<<10, 1),
		writeLayer(t, seedDir, 1<<20, 256<<10, 2),
		writeLayer(t, seedDir, 100, 256<<10, 3),
	}
	seeder := newSeeder(t, seedDir, layers)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	node, err := New(ctx, Config{Dir: dir, AllowedIPs: loopbackPeers(), Seeders: []string{fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort())}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	var done []string
	err = node.Download(ctx, layers, func(l jobspec.Layer, path string) {
		if got := fileDigest(t, path); got != l.Digest {
			t.Errorf("onDone(%s) with a file hashing to %s", l.Digest, got)
		}
		if path != filepath.Join(dir, strings.TrimPrefix(l.Digest, "sha256:")) {
			t.Errorf("path %s", path)
		}
		done = append(done, l.Digest)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(layers) {
		t.Fatalf("onDone called for %v", done)
	}
	var total int64
	st := node.Stats()
	for i, lp := range st.Layers {
		if lp.Done != lp.Total || lp.Total != layers[i].Size || lp.Digest != layers[i].Digest {
			t.Errorf("layer progress %+v", lp)
		}
		total += lp.Total
	}
	if st.FromSeeder != total || st.FromPeers != 0 {
		t.Errorf("from seeder %d, from peers %d; want %d and 0", st.FromSeeder, st.FromPeers, total)
	}
	// The seeder is its only peer: one connection per layer.
	if got := node.ConnsAdded(); got != int64(len(layers)) {
		t.Errorf("ConnsAdded() = %d, want %d", got, len(layers))
	}
}

// TestDownload_StartsLaterLayersAsPiecesPass: the first layer alone is
// more than startAhead, so the next ones may start only once enough of its
// pieces passed; the download learns that from the pieces themselves, not
// from the first layer's end.
func TestDownload_StartsLaterLayersAsPiecesPass(t *testing.T) {
	seedDir := t.TempDir()
	layers := []jobspec.Layer{
		writeLayer(t, seedDir, startAhead+4<<20, 1<<20, 4),
		writeLayer(t, seedDir, 1<<20, 256<<10, 5),
		writeLayer(t, seedDir, 300, 256<<10, 6),
	}
	seeder := newSeeder(t, seedDir, layers)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Seeders: []string{fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort())}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	var done []string
	err = node.Download(ctx, layers, func(l jobspec.Layer, _ string) { done = append(done, l.Digest) })
	if err != nil {
		t.Fatalf("download: %v (layers done: %d of %d)", err, len(done), len(layers))
	}
	if len(done) != len(layers) {
		t.Fatalf("onDone called for %v", done)
	}
	// The small layers started while the first still missed 32 MiB: they
	// end first. Started only when it ended, they would end after it.
	if done[len(done)-1] != layers[0].Digest {
		t.Errorf("layers done in the order %v; want the first layer (%s) last", done, layers[0].Digest)
	}
}

// newRawPeer starts a plain anacrolix client listening on host that serves
// the file at path as the layer's torrent, claiming it complete but for the
// pieces lacking.
func newRawPeer(t *testing.T, host string, layer jobspec.Layer, path string, lacking ...int) (*torrent.Client, *torrent.Torrent) {
	t.Helper()
	store := newFileStorage()
	cc := clientConfig(slog.New(slog.DiscardHandler), store)
	// A plain anacrolix peer: the client's own sockets, on host.
	cc.DisableTCP = false
	cc.SetListenAddr(host + ":0")
	cl, err := torrent.NewClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); store.close() })
	mi, err := metainfo.Load(strings.NewReader(string(layer.Torrent)))
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		t.Fatal(err)
	}
	lf, err := store.register(mi.HashInfoBytes(), path, &info, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range lacking {
		lf.setComplete(i, false)
	}
	tor, _ := cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: mi.HashInfoBytes(), InfoBytes: mi.InfoBytes, Storage: store})
	return cl, tor
}

func waitFor(ctx context.Context, cond func() bool) bool {
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

func TestDownload_BansPeerServingCorruptDataAndEndsCorrect(t *testing.T) {
	seedDir := t.TempDir()
	const pieceLen = 256 << 10
	layer := writeLayer(t, seedDir, 2<<20, pieceLen, 5)
	good := newSeeder(t, seedDir, []jobspec.Layer{layer})

	// The bad peer has the same metainfo and a copy of the file with one
	// byte flipped in every piece.
	data, err := os.ReadFile(filepath.Join(seedDir, strings.TrimPrefix(layer.Digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	for off := 100; off < len(data); off += pieceLen {
		data[off] ^= 0xff
	}
	badPath := filepath.Join(t.TempDir(), "corrupt")
	if err := os.WriteFile(badPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bad, _ := newRawPeer(t, "127.0.0.2", layer, badPath)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	node, err := New(ctx, Config{Dir: dir, AllowedIPs: loopbackPeers(), Seeders: []string{fmt.Sprintf("127.0.0.2:%d", bad.LocalPort())}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	errc := make(chan error, 1)
	go func() { errc <- node.Download(ctx, []jobspec.Layer{layer}, nil) }()

	// At first the bad peer is the only source; it must get banned.
	if !waitFor(ctx, func() bool { return banned(node, "127.0.0.2") }) {
		t.Fatalf("bad peer not banned; banned: %v", node.cl.BadPeerIPs())
	}
	// Now the good seeder appears.
	for _, tor := range node.cl.Torrents() {
		tor.AddPeers([]torrent.PeerInfo{{Addr: stringAddr(fmt.Sprintf("127.0.0.1:%d", good.LocalPort())), Source: torrent.PeerSourceDirect}})
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := fileDigest(t, filepath.Join(dir, strings.TrimPrefix(layer.Digest, "sha256:"))); got != layer.Digest {
		t.Fatalf("file hashes to %s, want %s", got, layer.Digest)
	}
	for _, tor := range node.cl.Torrents() {
		for _, pc := range tor.PeerConns() {
			if strings.HasPrefix(pc.RemoteAddr.String(), "127.0.0.2:") {
				t.Errorf("still connected to banned peer %s", pc.RemoteAddr)
			}
		}
	}
}

func banned(c *Client, ip string) bool {
	return slices.ContainsFunc(c.cl.BadPeerIPs(), func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Unmap().String() == ip
	})
}

type stringAddr string

func (s stringAddr) String() string { return string(s) }

// handshake dials the node from local IP from and sends a BitTorrent
// handshake for ih; it reports whether the node answered with its own.
func handshake(t *testing.T, from string, nodePort int, ih metainfo.Hash) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", nodePort))
	if err != nil {
		return false
	}
	defer conn.Close()
	msg := append([]byte("\x13BitTorrent protocol"), make([]byte, 8)...)
	msg = append(msg, ih[:]...)
	msg = append(msg, []byte("-XX0000-abcdefghijkl")...)
	if _, err := conn.Write(msg); err != nil {
		return false
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	reply := make([]byte, 68)
	_, err = io.ReadFull(conn, reply)
	return err == nil && string(reply[1:20]) == "BitTorrent protocol"
}

func TestNew_RefusesPeersOutsideAllowedIPs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		allowed  []string
		wantData bool
	}{
		{"other IP allowed", []string{"127.0.0.2"}, true},
		{"other IP not allowed", []string{"127.0.0.1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seedDir := t.TempDir()
			layer := writeLayer(t, seedDir, 1<<20, 256<<10, 6)
			other, otherTorrent := newRawPeer(t, "127.0.0.2", layer, filepath.Join(seedDir, strings.TrimPrefix(layer.Digest, "sha256:")))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			node, err := New(ctx, Config{
				Dir:        t.TempDir(),
				Seeders:    []string{fmt.Sprintf("127.0.0.2:%d", other.LocalPort())},
				AllowedIPs: tc.allowed,
			})
			if err != nil {
				t.Fatal(err)
			}
			defer node.Close()
			// Outbound: the node is told to use 127.0.0.2 as a seeder.
			err = node.Download(ctx, []jobspec.Layer{layer}, nil)
			// Inbound: a handshake from 127.0.0.2 for a torrent the node has.
			answered := handshake(t, "127.0.0.2", node.LocalPort(), otherTorrent.InfoHash())
			if tc.wantData {
				if err != nil {
					t.Fatal(err)
				}
				if !answered {
					t.Error("node did not answer an allowed peer's handshake")
				}
				return
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("download from a refused peer: %v", err)
			}
			if st := node.Stats(); st.FromPeers+st.FromSeeder != 0 || st.Peers != 0 {
				t.Errorf("node exchanged data with a refused peer: %+v", st)
			}
			if n := len(otherTorrent.PeerConns()); n != 0 {
				t.Errorf("refused peer holds %d connections", n)
			}
			if answered {
				t.Error("node answered a handshake from a refused IP")
			}
			if !handshake(t, "127.0.0.1", node.LocalPort(), otherTorrent.InfoHash()) {
				t.Error("node did not answer an allowed IP (control)")
			}
		})
	}
}

func TestDownload_ReturnsOnCancel(t *testing.T) {
	seedDir := t.TempDir()
	layer := writeLayer(t, seedDir, 1<<20, 256<<10, 8)
	// No seeder: nothing will ever arrive.
	node, err := New(context.Background(), Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	bad := layer
	bad.Digest = "sha256:zz"
	if err := node.Download(ctx, []jobspec.Layer{layer, bad}, nil); err == nil {
		t.Fatal("download with an invalid digest succeeded")
	}
	if err := node.Download(ctx, []jobspec.Layer{layer}, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
}

func TestStartable_KeepsLayersInImageOrder(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name    string
		missing []int64
		started int
		want    int
	}{
		{"first layer always starts, even when large", []int64{100 * mib, 10 * mib}, 0, 1},
		{"a large layer in flight holds the next back", []int64{40 * mib, 10 * mib}, 1, 1},
		{"the next starts once the started ones are nearly done", []int64{20 * mib, 10 * mib, 2 * mib, 5 * mib}, 1, 3},
		{"small layers start together", []int64{mib, mib, mib, mib}, 0, 4},
		{"finished layers count for nothing", []int64{0, 0, 100 * mib, 100 * mib}, 2, 3},
		{"never fewer than already started", []int64{100 * mib, 100 * mib, mib}, 2, 2},
		{"no layers", nil, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := startable(tc.missing, tc.started); got != tc.want {
				t.Errorf("startable(%v MiB, %d) = %d, want %d", mibs(tc.missing), tc.started, got, tc.want)
			}
		})
	}
}

func mibs(b []int64) []int64 {
	out := make([]int64, len(b))
	for i, n := range b {
		out[i] = n >> 20
	}
	return out
}

// TestDownload_FinishesFromTheSeederWhenItsPeersVanish: with its few
// connection slots filled by peers, a node keeps (or gets back) the
// seeder, and when every peer goes away mid-download it finishes from the
// seeder alone.
func TestDownload_FinishesFromTheSeederWhenItsPeersVanish(t *testing.T) {
	seedDir := t.TempDir()
	layer := writeLayer(t, seedDir, 8<<20, 256<<10, 31)
	tr := newTestTracker(nil)
	announce := tr.serve(t)
	const rate = 2 << 20 // bytes/s each way per client: the download takes a few seconds
	seeder, err := New(context.Background(), Config{Dir: seedDir, AllowedIPs: loopbackPeers(), tune: limitLink(rate)})
	if err != nil {
		t.Fatal(err)
	}
	defer seeder.Close()
	if err := seeder.Seed([]jobspec.Layer{layer}); err != nil {
		t.Fatal(err)
	}
	var peers []*Client
	for range 2 * maxConnsPerTorrent {
		p, err := New(context.Background(), Config{Dir: seedDir, AllowedIPs: loopbackPeers(), Announce: announce, tune: limitLink(rate)})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Seed([]jobspec.Layer{layer}); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	waitFor(context.Background(), func() bool { all, _, _ := tr.counts(); return all >= len(peers) })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Announce: announce, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort())}, tune: limitLink(4 * rate)})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	errc := make(chan error, 1)
	go func() { errc <- node.Download(ctx, []jobspec.Layer{layer}, nil) }()
	if !waitFor(ctx, func() bool { return node.Stats().FromPeers > 1<<20 }) {
		t.Fatalf("the node got nothing from its peers: %+v", node.Stats())
	}
	for _, p := range peers {
		p.Close()
	}
	vanished := time.Now()
	fromSeeder := node.Stats().FromSeeder
	if err := <-errc; err != nil {
		t.Fatalf("download after the peers vanished: %v", err)
	}
	st := node.Stats()
	t.Logf("finished %v after the peers vanished; from seeder %d → %d bytes, from peers %d", time.Since(vanished).Round(100*time.Millisecond), fromSeeder, st.FromSeeder, st.FromPeers)
	if st.FromSeeder <= fromSeeder {
		t.Errorf("the seeder sent nothing after the peers vanished: %+v", st)
	}
}

// TestDownload_TakesTheSeederBackFromPeersThatLackWhatItLacks: a node
// whose connection slots are all taken by peers that miss the same piece
// it misses, and that is not connected to the seeder, gets the seeder back
// and finishes. anacrolix by itself replaces none of those connections
// before they are a minute old: the 10-host stall of BENCHMARKS section 4.
func TestDownload_TakesTheSeederBackFromPeersThatLackWhatItLacks(t *testing.T) {
	seedDir := t.TempDir()
	const pieceLen = 256 << 10
	layer := writeLayer(t, seedDir, 16*pieceLen, pieceLen, 41)
	path := filepath.Join(seedDir, strings.TrimPrefix(layer.Digest, "sha256:"))
	const lacked = 5 // the piece no peer has

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node, seederPort := nodeWithLateSeeder(ctx, t)
	errc, tor := startDownload(ctx, t, node, layer)
	for range maxConnsPerTorrent {
		peer, _ := newRawPeer(t, "127.0.0.2", layer, path, lacked)
		tor.AddPeers([]torrent.PeerInfo{{Addr: stringAddr(fmt.Sprintf("127.0.0.2:%d", peer.LocalPort())), Source: torrent.PeerSourceDirect}})
	}
	if !waitFor(ctx, func() bool {
		return len(tor.PeerConns()) == maxConnsPerTorrent && tor.BytesMissing() == pieceLen
	}) {
		t.Fatalf("the node did not get all but one piece from %d peers: %d conns, %d bytes missing", maxConnsPerTorrent, len(tor.PeerConns()), tor.BytesMissing())
	}

	started := seedLateAndWait(t, seedDir, layer, seederPort, errc, tor)
	t.Logf("the seeder's piece came %v after it listened", time.Since(started).Round(100*time.Millisecond))
	if st := node.Stats(); st.FromSeeder != pieceLen {
		t.Errorf("from the seeder %d bytes, want the lacked piece (%d)", st.FromSeeder, pieceLen)
	}
}

// nodeWithLateSeeder starts a node given a seeder address at which nothing
// listens yet: the test starts the seeder there (ListenPort: seederPort)
// once the node's slots are full, so the node's first dial of it fails.
func nodeWithLateSeeder(ctx context.Context, t *testing.T) (node *Client, seederPort int) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seederPort = l.Addr().(*net.TCPAddr).Port
	l.Close()
	node, err = New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Seeders: []string{fmt.Sprintf("127.0.0.1:%d", seederPort)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	return node, seederPort
}

// seedLateAndWait starts the seeder of layer (in seedDir) at seederPort
// and waits for the node's download (errc); it returns when the seeder
// started listening.
func seedLateAndWait(t *testing.T, seedDir string, layer jobspec.Layer, seederPort int, errc <-chan error, tor *torrent.Torrent) (started time.Time) {
	t.Helper()
	seeder, err := New(context.Background(), Config{Dir: seedDir, AllowedIPs: loopbackPeers(), ListenPort: seederPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seeder.Close() })
	if err := seeder.Seed([]jobspec.Layer{layer}); err != nil {
		t.Fatal(err)
	}
	started = time.Now()
	if err := <-errc; err != nil {
		t.Fatalf("download: %v (%d conns, %d bytes missing)", err, len(tor.PeerConns()), tor.BytesMissing())
	}
	return started
}

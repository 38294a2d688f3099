package swarm

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// fakePeer is a BitTorrent peer (fast extension) that has some pieces of
// a layer, unchokes at once and serves every request for them, except
// that it rejects its first request for piece rejectOnce (-1: none); a
// silent one answers no request at all.
type fakePeer struct {
	l          net.Listener
	file       *os.File
	has        []bool
	rejectOnce int
	silent     bool
	rejected   chan struct{} // closed once the reject was sent
}

func newFakePeer(t *testing.T, layer jobspec.Layer, path string, has []bool, rejectOnce int) *fakePeer {
	return startFakePeer(t, layer, path, &fakePeer{has: has, rejectOnce: rejectOnce})
}

// newSilentPeer is a peer that has every piece and never sends one: a
// host whose process hangs, or whose uplink is taken, with its connection
// still open.
func newSilentPeer(t *testing.T, layer jobspec.Layer, path string, pieces int) *fakePeer {
	has := make([]bool, pieces)
	for i := range has {
		has[i] = true
	}
	return startFakePeer(t, layer, path, &fakePeer{has: has, rejectOnce: -1, silent: true})
}

func startFakePeer(t *testing.T, layer jobspec.Layer, path string, p *fakePeer) *fakePeer {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p.l, p.file, p.rejected = l, f, make(chan struct{})
	mi, err := metainfo.Load(strings.NewReader(string(layer.Torrent)))
	if err != nil {
		t.Fatal(err)
	}
	ih := mi.HashInfoBytes()
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		p.serve(c, ih)
	})
	t.Cleanup(func() { l.Close(); wg.Wait(); f.Close() })
	return p
}

func (p *fakePeer) serve(c net.Conn, ih metainfo.Hash) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := pp.Handshake(ctx, c, &ih, [20]byte{'-', 'F', 'K'}, pp.NewPeerExtensionBytes(pp.ExtensionBitFast)); err != nil {
		return
	}
	w := bufio.NewWriter(c)
	send := func(m pp.Message) error {
		w.Write(m.MustMarshalBinary())
		return w.Flush()
	}
	if send(pp.Message{Type: pp.Bitfield, Bitfield: p.has}) != nil || send(pp.Message{Type: pp.Unchoke}) != nil {
		return
	}
	d := pp.Decoder{R: bufio.NewReader(c), MaxLength: 1 << 20, Pool: &sync.Pool{New: func() any { b := make([]byte, 1<<20); return &b }}}
	for {
		var m pp.Message
		if err := d.Decode(&m); err != nil {
			return
		}
		if m.Type != pp.Request || p.silent {
			continue
		}
		if int(m.Index) == p.rejectOnce && !isClosed(p.rejected) {
			if send(pp.Message{Type: pp.Reject, Index: m.Index, Begin: m.Begin, Length: m.Length}) != nil {
				return
			}
			close(p.rejected)
			continue
		}
		b := make([]byte, m.Length)
		if _, err := p.file.ReadAt(b, int64(m.Index)*chunkSize+int64(m.Begin)); err != nil {
			return
		}
		if send(pp.Message{Type: pp.Piece, Index: m.Index, Begin: m.Begin, Piece: b}) != nil {
			return
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestDownload_AsksAgainForAPieceRejectedWhenNothingElseHappens: of the
// node's two peers, one has every piece but the last and the other only
// the last, and rejects the node's first request for it, then sends
// nothing: the seeder refusing a piece, with the node's other peers
// unable to send it. anacrolix asks nobody for that piece again by itself
// (the node's other connection has nothing to do with it), so the node
// finishes only because it notices it receives nothing (kickStalled).
func TestDownload_AsksAgainForAPieceRejectedWhenNothingElseHappens(t *testing.T) {
	seedDir := t.TempDir()
	const pieces = 8
	layer := writeLayer(t, seedDir, pieces*chunkSize, chunkSize, 53)
	path := filepath.Join(seedDir, strings.TrimPrefix(layer.Digest, "sha256:"))
	most, last := make([]bool, pieces), make([]bool, pieces)
	for i := range pieces - 1 {
		most[i] = true
	}
	last[pieces-1] = true
	many := newFakePeer(t, layer, path, most, -1)
	refuser := newFakePeer(t, layer, path, last, pieces-1)

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers()})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	errc, tor := startDownload(ctx, t, node, layer)
	tor.AddPeers([]torrent.PeerInfo{
		{Addr: stringAddr(many.l.Addr().String()), Source: torrent.PeerSourceDirect},
		{Addr: stringAddr(refuser.l.Addr().String()), Source: torrent.PeerSourceDirect},
	})
	select {
	case <-refuser.rejected:
	case <-ctx.Done():
		t.Fatalf("the node never asked for the last piece: %d bytes missing", tor.BytesMissing())
	}
	rejected := time.Now()
	if err := <-errc; err != nil {
		t.Fatalf("download after the reject: %v (%d bytes missing)", err, tor.BytesMissing())
	}
	t.Logf("the node had the whole layer %v after the reject", time.Since(rejected).Round(100*time.Millisecond))
}

func TestStallWatch_WaitsTwiceAsLongAfterEachStallUntilDataComes(t *testing.T) {
	var w stallWatch
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if w.stalled(0, at(0)) {
		t.Fatal("stalled at the first look")
	}
	// Nothing received: stalls after 5, then 10, 20, 40 s, then every minute.
	var stalls []time.Duration
	for d := time.Duration(0); d <= 5*time.Minute; d += time.Second {
		if w.stalled(0, at(d)) {
			stalls = append(stalls, d)
		}
	}
	want := []time.Duration{5, 15, 35, 75, 135, 195, 255}
	if len(stalls) != len(want) {
		t.Fatalf("stalls at %v, want at %v seconds", stalls, want)
	}
	for i := range want {
		if stalls[i] != want[i]*time.Second {
			t.Fatalf("stalls at %v, want at %v seconds", stalls, want)
		}
	}
	// A byte resets the wait to 5 s.
	last := stalls[len(stalls)-1]
	if w.stalled(1, at(last+time.Second)) {
		t.Fatal("stalled as data came")
	}
	if w.stalled(1, at(last+5*time.Second)) || !w.stalled(1, at(last+6*time.Second)) {
		t.Fatal("after data, not stalled again exactly 5 s later")
	}
}

// TestDownload_TakesTheSeederBackFromPeersThatSendNothing: a node whose
// connection slots are all taken by peers that have every piece it lacks
// and never send one (hosts hung, or their uplinks taken, with their
// connections open), and that is not connected to the seeder, gets the
// seeder back and finishes from it. anacrolix by itself replaces such a
// connection only once it is a minute old, and one that still has what
// the node lacks is not the redial's useless peer.
func TestDownload_TakesTheSeederBackFromPeersThatSendNothing(t *testing.T) {
	seedDir := t.TempDir()
	const pieces = 16
	layer := writeLayer(t, seedDir, pieces*chunkSize, chunkSize, 59)
	path := filepath.Join(seedDir, strings.TrimPrefix(layer.Digest, "sha256:"))

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	node, seederPort := nodeWithLateSeeder(ctx, t)
	errc, tor := startDownload(ctx, t, node, layer)
	for range maxConnsPerTorrent {
		p := newSilentPeer(t, layer, path, pieces)
		tor.AddPeers([]torrent.PeerInfo{{Addr: stringAddr(p.l.Addr().String()), Source: torrent.PeerSourceDirect}})
	}
	if !waitFor(ctx, func() bool { return len(tor.PeerConns()) == maxConnsPerTorrent }) {
		t.Fatalf("the node connected to %d of %d silent peers", len(tor.PeerConns()), maxConnsPerTorrent)
	}

	started := seedLateAndWait(t, seedDir, layer, seederPort, errc, tor)
	t.Logf("the layer came %v after the seeder listened", time.Since(started).Round(100*time.Millisecond))
	if st := node.Stats(); st.FromSeeder != layer.Size {
		t.Errorf("from the seeder %d bytes, want the whole layer (%d)", st.FromSeeder, layer.Size)
	}
}

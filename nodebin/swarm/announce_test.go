package swarm

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	trHttp "github.com/anacrolix/torrent/tracker/http"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// countingListener accepts TCP connections on 127.0.0.1 and counts them;
// it stands for a peer the tracker lists.
func countingListener(t *testing.T) (netip.AddrPort, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), &n
}

func TestAnnounce_HonoursTheTrackersIntervalAndCompletesAtOnce(t *testing.T) {
	seedDir := t.TempDir()
	layer := writeLayer(t, seedDir, 2<<20, 256<<10, 21)
	seeder := newSeeder(t, seedDir, []jobspec.Layer{layer})
	tr := newTestTracker(func(left int64) time.Duration {
		if left == 0 {
			return 3 * time.Second // a tracker slowing finished peers down
		}
		return time.Second
	})
	announce := tr.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Announce: announce, Seeders: []string{fmt.Sprintf("127.0.0.1:%d", seeder.LocalPort())}})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Download(ctx, []jobspec.Layer{layer}, nil); err != nil {
		t.Fatal(err)
	}
	doneAt := time.Now()
	time.Sleep(7500 * time.Millisecond)
	var completed *trackerAnnounce
	after := 0
	for _, a := range tr.announcesFrom(node.LocalPort()) {
		switch {
		case a.event == "completed":
			completed = &a
		case a.left == 0 && completed != nil:
			after++
		}
	}
	if completed == nil || completed.left != 0 {
		t.Fatalf("no completed announce with left=0: %+v", tr.announcesFrom(node.LocalPort()))
	}
	if d := completed.at.Sub(doneAt); d > time.Second {
		t.Errorf("completed announced %v after the download ended, want at once", d)
	}
	// 7.5 s at the tracker's 3 s: two more announces, not seven.
	if after != 2 {
		t.Errorf("%d announces in 7.5 s after completing at a 3 s interval, want 2", after)
	}
	node.Close()
	all := tr.announcesFrom(node.LocalPort())
	if last := all[len(all)-1]; last.event != "stopped" {
		t.Errorf("last announce %+v, want stopped on close", last)
	}
}

func TestAnnounce_CompleteTorrentDialsNoTrackerPeers(t *testing.T) {
	seedDir := t.TempDir()
	layer := writeLayer(t, seedDir, 1<<20, 256<<10, 22)
	stranger, dials := countingListener(t)
	tr := newTestTracker(nil)
	tr.extra = []netip.AddrPort{stranger}
	announce := tr.serve(t)

	// A client that has the layer complete: it serves whoever dials it and
	// dials nobody itself.
	s, err := New(context.Background(), Config{Dir: seedDir, AllowedIPs: loopbackPeers(), Announce: announce})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Seed([]jobspec.Layer{layer}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if n := len(tr.announcesFrom(s.LocalPort())); n < 2 {
		t.Fatalf("%d announces in 3 s at a 1 s interval", n)
	}
	if n := dials.Load(); n != 0 {
		t.Errorf("a complete torrent dialed a tracker peer %d times", n)
	}
	for _, a := range tr.announcesFrom(s.LocalPort()) {
		if a.numWant != "0" {
			t.Errorf("a complete torrent asked the tracker for peers: %+v", a)
		}
	}

	// Control: a downloading client dials the peers the tracker lists.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	node, err := New(ctx, Config{Dir: t.TempDir(), AllowedIPs: loopbackPeers(), Announce: announce})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Download(ctx, []jobspec.Layer{layer}, nil); err != nil {
		t.Fatal(err)
	}
	if dials.Load() == 0 {
		t.Error("a downloading torrent did not dial the tracker's peers")
	}
	if first := tr.announcesFrom(node.LocalPort())[0]; first.event != "started" || first.numWant != strconv.Itoa(maxConnsPerTorrent) {
		t.Errorf("first announce of a downloading torrent %+v, want started asking for numwant=%d, its free slots", first, maxConnsPerTorrent)
	}
}

// A torrent is given tracker peers only for its free connection slots: a
// peer added to a full torrent is dialed and replaces a working
// connection (see addPeers).
func TestPickPeers_OnlyForFreeSlots(t *testing.T) {
	var list []trHttp.Peer
	for i := range 6 {
		list = append(list, trHttp.Peer{IP: net.IPv4(10, 0, 0, byte(i+1)), Port: 6881})
	}
	orig := slices.Clone(list)
	for _, tc := range []struct{ free, want int }{{-1, 0}, {0, 0}, {1, 1}, {3, 3}, {10, 6}} {
		got := pickPeers(list, tc.free)
		if len(got) != tc.want {
			t.Errorf("free %d: %d peers, want %d", tc.free, len(got), tc.want)
		}
		seen := make(map[string]bool)
		for _, p := range got {
			a := p.Addr.String()
			if seen[a] || !slices.ContainsFunc(list, func(q trHttp.Peer) bool { return (&net.TCPAddr{IP: q.IP, Port: q.Port}).String() == a }) {
				t.Errorf("free %d: peer %s twice or not from the list", tc.free, a)
			}
			seen[a] = true
		}
	}
	if !slices.EqualFunc(list, orig, func(a, b trHttp.Peer) bool { return a.IP.Equal(b.IP) && a.Port == b.Port }) {
		t.Error("pickPeers reordered the caller's list")
	}
}

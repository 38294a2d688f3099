package tracker

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// checkSwarm fails unless every index the store keeps agrees with where
// the entries are, and the expiry heap is ordered.
func checkSwarm(t *testing.T, s *swarm) {
	t.Helper()
	if n := len(s.seeds) + len(s.leechers); n != len(s.byID) || len(s.expiry) != len(s.byID) {
		t.Fatalf("%d seeds + %d leechers, %d in the heap, %d by ID", len(s.seeds), len(s.leechers), len(s.expiry), len(s.byID))
	}
	for name, set := range map[string]peerSet{"seeds": s.seeds, "leechers": s.leechers} {
		for i, e := range set {
			if e.slot != i || s.byID[e.ID] != e || e.seed() != (name == "seeds") {
				t.Fatalf("%s[%d] = %+v out of place", name, i, e.Peer)
			}
		}
	}
	for i, e := range s.expiry {
		if e.heapIdx != i {
			t.Fatalf("heap[%d] says it is at %d", i, e.heapIdx)
		}
		if i > 0 && e.expires.Before(s.expiry[(i-1)/2].expires) {
			t.Fatalf("heap[%d] expires before its parent", i)
		}
	}
}

func TestSwarm_ExpiresExactlyThePeersWhoseTimeRanOut(t *testing.T) {
	s := newSwarm()
	base := time.Unix(1000, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 1000
	expires := make(map[[20]byte]time.Time, n)
	// Insert in random order of expiry, half of them seeds.
	for _, i := range rng.Perm(n) {
		var id [20]byte
		binary.BigEndian.PutUint32(id[:], uint32(i))
		at := base.Add(time.Duration(i) * time.Millisecond)
		s.insert(Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1), Left: int64(i % 2)}, at)
		expires[id] = at
	}
	checkSwarm(t, s)
	// Re-announces move some peers' expiry later and flip some to seeds.
	for i := 0; i < n; i += 7 {
		var id [20]byte
		binary.BigEndian.PutUint32(id[:], uint32(i))
		e := s.byID[id]
		at := base.Add(time.Duration(n+i) * time.Millisecond)
		s.update(e, e.Addr, 0, base, at)
		expires[id] = at
	}
	checkSwarm(t, s)

	now := base.Add(n / 2 * time.Millisecond)
	var want int
	for _, at := range expires {
		if now.After(at) {
			want++
		}
	}
	seeds, leechers := s.expire(now)
	if seeds+leechers != want {
		t.Errorf("expired %d, want %d", seeds+leechers, want)
	}
	checkSwarm(t, s)
	for id, e := range s.byID {
		if now.After(expires[id]) || !e.expires.Equal(expires[id]) {
			t.Fatalf("peer %x kept, expires %v, now %v", id[:4], e.expires, now)
		}
	}
	// Nothing more to expire: the store is left alone.
	if seeds, leechers := s.expire(now); seeds+leechers != 0 {
		t.Errorf("second expiry removed %d", seeds+leechers)
	}
	// Sampling reorders the sets but keeps every index right.
	for range 100 {
		s.sample(nil, 30, [20]byte{}, netip.AddrPort{})
	}
	checkSwarm(t, s)
}

func TestSwarm_RemoveKeepsTheRestFindable(t *testing.T) {
	s := newSwarm()
	now := time.Unix(1000, 0)
	var ids [][20]byte
	for i := range 50 {
		var id [20]byte
		id[0] = byte(i)
		ids = append(ids, id)
		s.insert(Peer{ID: id, Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), 1), Left: int64(i % 3)}, now.Add(time.Duration(i)*time.Second))
	}
	for i := 0; i < 50; i += 3 {
		s.remove(s.byID[ids[i]])
		checkSwarm(t, s)
	}
	if len(s.byID) != 33 {
		t.Errorf("%d peers left, want 33", len(s.byID))
	}
}

package tracker

import (
	"container/heap"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// swarm is the peer store of one torrent. Insert, update and delete cost
// O(log n) in its n peers (a map lookup, a swap-remove, a heap fix), a
// sample of k peers costs O(k), and expiry costs O(log n) per peer that
// expires and O(1) when none does: nothing scans the whole swarm.
//
// Peers are kept in two slices, finished (left=0) and not, so that finished
// peers can be handed out first, and in a heap ordered by the time each
// peer expires. Each peer knows its index in both.
type swarm struct {
	mu       sync.Mutex
	byID     map[[20]byte]*entry
	seeds    peerSet // left == 0: have every piece
	leechers peerSet
	expiry   expiryHeap
	// warnedFull: the peer limit was logged once already.
	warnedFull bool
}

// entry is one peer with its places in the store.
type entry struct {
	Peer
	expires time.Time // listed until then
	slot    int       // index in seeds or leechers
	heapIdx int       // index in expiry
}

func (e *entry) seed() bool { return e.Left == 0 }

func newSwarm() *swarm {
	return &swarm{byID: make(map[[20]byte]*entry)}
}

// set returns the slice e belongs in.
func (s *swarm) set(e *entry) *peerSet {
	if e.seed() {
		return &s.seeds
	}
	return &s.leechers
}

// expire removes the peers whose time ran out at now, earliest first, and
// reports how many seeds and leechers it removed. s.mu is held.
func (s *swarm) expire(now time.Time) (seeds, leechers int) {
	for len(s.expiry) > 0 && now.After(s.expiry[0].expires) {
		e := s.expiry[0]
		if e.seed() {
			seeds++
		} else {
			leechers++
		}
		s.remove(e)
	}
	return seeds, leechers
}

// remove takes e out of the store. s.mu is held.
func (s *swarm) remove(e *entry) {
	s.set(e).remove(e)
	heap.Remove(&s.expiry, e.heapIdx)
	delete(s.byID, e.ID)
}

// insert adds a new peer. s.mu is held; the caller checked that the ID is
// not listed yet.
func (s *swarm) insert(p Peer, expires time.Time) *entry {
	e := &entry{Peer: p, expires: expires}
	s.byID[p.ID] = e
	s.set(e).add(e)
	heap.Push(&s.expiry, e)
	return e
}

// update records a new announce of a listed peer: its address, what it
// still needs and when it expires. s.mu is held.
func (s *swarm) update(e *entry, addr netip.AddrPort, left int64, seen, expires time.Time) {
	if (left == 0) != e.seed() {
		s.set(e).remove(e)
		e.Left = left
		s.set(e).add(e)
	}
	e.Left, e.Addr, e.LastSeen = left, addr, seen
	if !e.expires.Equal(expires) {
		e.expires = expires
		heap.Fix(&s.expiry, e.heapIdx)
	}
}

// sample appends to dst up to k peers, finished peers first, each set
// sampled uniformly at random without replacement; the requester (by ID or
// by address) is never among them. s.mu is held: sampling reorders the sets.
func (s *swarm) sample(dst []*entry, k int, id [20]byte, addr netip.AddrPort) []*entry {
	dst = s.seeds.sample(dst, k, id, addr)
	return s.leechers.sample(dst, k, id, addr)
}

// peerSet is a set of peers in no order, with O(1) add and remove (each
// entry knows its slot) and O(k) uniform sampling.
type peerSet []*entry

func (ps *peerSet) add(e *entry) {
	e.slot = len(*ps)
	*ps = append(*ps, e)
}

// remove swaps e with the last entry and shrinks the set.
func (ps *peerSet) remove(e *entry) {
	s := *ps
	last := len(s) - 1
	s.swap(e.slot, last)
	s[last] = nil
	*ps = s[:last]
}

func (ps peerSet) swap(i, j int) {
	ps[i], ps[j] = ps[j], ps[i]
	ps[i].slot, ps[j].slot = i, j
}

// sample appends to dst random entries of ps until dst holds k or ps is
// exhausted, skipping the requester. It is a partial Fisher-Yates shuffle:
// the i-th pick is drawn uniformly from the entries not picked yet and
// swapped to slot i, so k picks cost O(k) (plus one per skipped entry).
func (ps peerSet) sample(dst []*entry, k int, id [20]byte, addr netip.AddrPort) []*entry {
	for i := 0; i < len(ps) && len(dst) < k; i++ {
		ps.swap(i, i+rand.IntN(len(ps)-i))
		if e := ps[i]; e.ID != id && e.Addr != addr {
			dst = append(dst, e)
		}
	}
	return dst
}

// expiryHeap orders entries by expiry time, earliest first
// (container/heap.Interface).
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}

func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}

func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old) - 1
	e := old[n]
	old[n] = nil
	*h = old[:n]
	e.heapIdx = -1
	return e
}

package orchestrator

import (
	"context"
	"sort"
	"sync"
	"time"
)

// binSources decides where each host gets the node binary from, so that
// the binary crosses the bastion's link a few times per job instead of
// once per host: the bastion uploads it to the first hosts of each
// architecture, one after the other; every node that runs hands it on (nodebin/handoff), a few
// fetches at a time; a host waits for a free peer rather than for the
// bastion. The set of hosts that hold the binary then doubles about every
// transfer time. A host falls back to the bastion when it cannot fetch
// (no curl or wget), when a peer's transfer failed (the peer is not asked
// again) and no good peer is left, or when no peer turned up at all within
// the wait. The layers' torrents are handed on the same way, with
// settings of their own (newTorrentSources).
type binSources struct {
	// firstUploads is how many uploads of each binary the bastion makes,
	// one at a time, without waiting for a peer.
	firstUploads int
	// perPeer bounds the fetches one peer serves at once: each of k gets
	// 1/k of its link, and k = 1 or 2 spreads the binary fastest.
	perPeer int
	// minWait is the least a host waits for a peer before it asks the
	// bastion; the wait grows to 4 × the slowest bastion upload so far
	// on slow links.
	minWait time.Duration
	now     func() time.Time

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	peers   map[string][]*binPeer
	// started counts the bastion's uploads per binary, in flight or done;
	// finished those done.
	started  map[string]int
	finished map[string]int
	slowest  time.Duration
	// bastionBytes is what the bastion's uploads put on its link, every
	// upload counted (a host set up again after a lost connection may
	// take the binary twice).
	bastionBytes int64
	// origin is where each host's binary came from last (originCache,
	// originPeer, originBastion): a host counts once in the report
	// however often it was set up.
	origin map[string]string
}

const (
	originCache   = "cache"
	originPeer    = "peer"
	originBastion = "bastion"
)

// binPeer is a running node that hands its binary on.
type binPeer struct {
	host string
	url  string
	busy int
	bad  bool
}

// binSource is where one host gets the binary: a peer's URL, or the
// bastion (peer nil).
type binSource struct {
	peer *binPeer
}

func newBinSources() *binSources {
	return &binSources{
		firstUploads: 3, perPeer: 2, minWait: 15 * time.Second, now: time.Now,
		changed: make(chan struct{}), peers: map[string][]*binPeer{}, started: map[string]int{}, finished: map[string]int{}, origin: map[string]string{},
	}
}

// signal wakes the hosts waiting in get; b.mu is held.
func (b *binSources) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// addPeer records that host now hands the binary with sha256 sha on at
// url.
func (b *binSources) addPeer(sha, host, url string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.peers[sha] {
		if p.host == host {
			p.url, p.bad = url, false
			b.signal()
			return
		}
	}
	b.peers[sha] = append(b.peers[sha], &binPeer{host: host, url: url})
	b.signal()
}

// removePeer forgets host: its node stopped.
func (b *binSources) removePeer(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for sha, ps := range b.peers {
		for i, p := range ps {
			if p.host == host {
				b.peers[sha] = append(ps[:i:i], ps[i+1:]...)
			}
		}
	}
}

// get waits for a source of the binary sha for a host that can fetch
// (canFetch) or not; failed is how many fetches of this host failed
// already: such a host does not wait for peers when every peer known
// failed. The caller hands the source back with done.
func (b *binSources) get(ctx context.Context, sha string, canFetch bool, failed int) (binSource, error) {
	start := b.now()
	for {
		b.mu.Lock()
		if canFetch {
			if p := b.freePeer(sha); p != nil {
				p.busy++
				b.mu.Unlock()
				return binSource{peer: p}, nil
			}
		}
		// The wait for a peer counts once the bastion delivered this
		// binary somewhere: before that, the first uploads are the
		// peers to come.
		// A host that waited long for a peer while none turned up asks
		// the bastion; while peers exist it waits for a free one, as
		// they free up every transfer time. (Falling back while peers
		// were merely busy had the bastion upload the binary 43 times
		// to 100 hosts of a CPU-bound lab.)
		wait := max(b.minWait, 4*b.slowest)
		late := b.finished[sha] > 0 && b.now().Sub(start) >= wait && !b.anyGoodPeer(sha)
		// The first uploads go one at a time: each at the bastion's
		// whole rate, so the first host hands the binary on after one
		// transfer time rather than after three (on a 10 Mbit/s link,
		// 6 s instead of 19 s), and the bastion has its link back for
		// the layers sooner.
		first := b.started[sha] < b.firstUploads && b.started[sha] == b.finished[sha]
		if !canFetch || first || late || failed > 0 && !b.anyGoodPeer(sha) {
			b.started[sha]++
			b.mu.Unlock()
			return binSource{}, nil
		}
		ch := b.changed
		b.mu.Unlock()
		t := time.NewTimer(wait - b.now().Sub(start))
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return binSource{}, ctx.Err()
		}
		t.Stop()
	}
}

// tryFirst takes one of sha's first bastion uploads if get would hand it
// out now, without waiting: no free peer, and none of the first uploads
// in flight.
func (b *binSources) tryFirst(sha string) (binSource, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freePeer(sha) == nil && b.started[sha] < b.firstUploads && b.started[sha] == b.finished[sha] {
		b.started[sha]++
		return binSource{}, true
	}
	return binSource{}, false
}

// anyGoodPeer reports whether sha has a peer whose transfers did not fail;
// b.mu is held.
func (b *binSources) anyGoodPeer(sha string) bool {
	for _, p := range b.peers[sha] {
		if !p.bad {
			return true
		}
	}
	return false
}

// freePeer is the usable peer of sha with the fewest fetches in flight
// (below perPeer), or nil; b.mu is held.
func (b *binSources) freePeer(sha string) *binPeer {
	ps := b.peers[sha]
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].busy < ps[j].busy })
	for _, p := range ps {
		if !p.bad && p.busy < b.perPeer {
			return p
		}
	}
	return nil
}

// done hands src back after host's transfer of size bytes that took took
// and succeeded (ok) or not. A peer that failed is not asked again; a
// failed bastion upload frees its place among the first uploads.
func (b *binSources) done(src binSource, sha, host string, ok bool, size int64, took time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case src.peer != nil:
		src.peer.busy--
		if !ok {
			src.peer.bad = true
		} else {
			b.origin[host] = originPeer
		}
	case ok:
		b.origin[host] = originBastion
		b.bastionBytes += size
		b.slowest = max(b.slowest, took)
		b.finished[sha]++
	default:
		b.started[sha]--
	}
	b.signal()
}

// cached records a host whose node cache held the binary.
func (b *binSources) cached(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.origin[host] = originCache
}

// report is what the binary's distribution cost so far: each host counted
// once, by where its binary came from last.
func (b *binSources) report() NodeBinaryReport {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := NodeBinaryReport{BastionBytes: b.bastionBytes}
	for _, from := range b.origin {
		switch from {
		case originCache:
			r.FromCache++
		case originPeer:
			r.FromPeers++
		case originBastion:
			r.FromBastion++
		}
	}
	return r
}

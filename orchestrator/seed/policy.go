package seed

import (
	"math/bits"
	"time"
)

// policy decides, for one torrent, which requests the seeder serves, so that
// each piece leaves the bastion about once and the hosts pass it on among
// themselves. It is a pure state machine: the connections tell it what
// peers have and ask, and pass the time in.
//
// Why it decides per request and advertises everything: the nodes' client
// (anacrolix/torrent v1.61.0 with its default MaxUnverifiedBytes of 64 MiB)
// only looks at the first 64 MiB of the pieces it still wants, ordered
// partial first, then by availability (lowest first), then by index. A piece
// no connected peer advertises has availability 0 and sorts first, so a
// seeder advertising only a few pieces per connection (BEP 16 style) would
// leave every node of a layer larger than 64 MiB staring at pieces nobody
// offers: it would request nothing, from the seeder or its peers. So the
// seeder says it has everything (HaveAll) and uses the fast extension's
// Reject Request (BEP 6) to refuse what it will not send:
//
//   - A piece nobody has received yet goes to the first connection that
//     asks for it, which then owns it until it reports the piece (HAVE) or
//     leaves; nobody else gets it from the seeder meanwhile. A connection
//     owns at most ownCap pieces at once unless it is the only one
//     downloading, so the never-sent pieces spread over the hosts and a lone
//     host still gets the seeder's full rate.
//   - A piece some host has reported is not sent again, except to a
//     starving connection: one that is interested, lacks pieces, and has
//     reported none for starveLimit while every piece is out (owned or
//     delivered). It is rescued: served whatever it asks until it reports a
//     piece the seeder did not send it (it has another source again).
//   - An owner that stops asking for its piece for ownerIdle, or leaves
//     before reporting it, gives the piece back to the pool.
//
// After a reject, an anacrolix node asks that connection for nothing more
// until something else happens on it, so the seeder pokes idle connections
// that could be served (a never-sent piece is free, or they are rescued)
// with a Suggest Piece, which makes the node re-plan its requests.
type policy struct {
	cfg       policyConfig
	numPieces int
	pieceLen  int64
	lastLen   int64

	pieces []pieceState
	peers  map[*peer]struct{}
	// pool counts pieces neither delivered nor owned: never sent, or given
	// back by an owner that left.
	pool int
	// allOutAt is when pool last became 0; starving is measured from there.
	allOutAt time.Time
	// haveGap is a moving average of the time between two reports of one
	// peer while every piece is out: how long a healthy host takes per piece.
	haveGap time.Duration
}

type policyConfig struct {
	ownCap      int           // pieces a connection may own while others download too
	starveAfter time.Duration // least time without a report before a connection starves
	ownerIdle   time.Duration // an owner silent this long about its piece gives it back
	pokeEvery   time.Duration // least time between two pokes of one connection
}

// blockUnit is the granularity at which the policy remembers which bytes of
// a piece were sent (for Stats.Resent).
const blockUnit = 16 << 10

type pieceState struct {
	owner     *peer
	lastReq   time.Time // the owner's last request for it
	delivered bool      // some peer reported it
	sent      []uint64  // blockUnits sent at least once
}

// peer is the policy's view of one connection.
type peer struct {
	has        []uint64
	nHave      int
	owned      int
	interested bool
	// serveAll is for peers without the fast extension: they cannot be
	// refused, so they are served everything they ask for.
	serveAll bool
	rescued  bool
	since    time.Time // joined, or last became interested
	lastHave time.Time
	lastPoke time.Time
	sentTo   map[int]int64 // bytes sent to this peer, by piece
}

func newPolicy(l *layerInfo, cfg policyConfig) *policy {
	p := &policy{
		cfg:       cfg,
		numPieces: l.numPieces,
		pieceLen:  l.pieceLen,
		lastLen:   l.pieceLength(l.numPieces - 1),
		pieces:    make([]pieceState, l.numPieces),
		peers:     make(map[*peer]struct{}),
		pool:      l.numPieces,
	}
	return p
}

func (p *policy) length(i int) int64 {
	if i == p.numPieces-1 {
		return p.lastLen
	}
	return p.pieceLen
}

// join adds a connection.
func (p *policy) join(serveAll bool, now time.Time) *peer {
	pr := &peer{
		has:      make([]uint64, (p.numPieces+63)/64),
		serveAll: serveAll,
		since:    now,
		sentTo:   make(map[int]int64),
	}
	p.peers[pr] = struct{}{}
	return pr
}

// leave removes a connection; the pieces it owned go back to the pool.
func (p *policy) leave(pr *peer) {
	if _, ok := p.peers[pr]; !ok {
		return
	}
	delete(p.peers, pr)
	for i := range p.pieces {
		if p.pieces[i].owner == pr {
			p.release(i)
		}
	}
}

func (p *policy) release(i int) {
	ps := &p.pieces[i]
	ps.owner.owned--
	ps.owner = nil
	p.pool++
}

func (pr *peer) hasPiece(i int) bool { return pr.has[i/64]&(1<<(i%64)) != 0 }

func (pr *peer) complete(n int) bool { return pr.nHave == n }

// setInterested records the peer's interest.
func (p *policy) setInterested(pr *peer, on bool, now time.Time) {
	if on && !pr.interested {
		pr.since = now
	}
	pr.interested = on
}

// have records that pr reported piece i; it returns whether pr now has
// every piece.
func (p *policy) have(pr *peer, i int, now time.Time) bool {
	if pr.hasPiece(i) {
		return pr.complete(p.numPieces)
	}
	pr.has[i/64] |= 1 << (i % 64)
	pr.nHave++
	ps := &p.pieces[i]
	if !ps.delivered {
		ps.delivered = true
		if ps.owner != nil {
			ps.owner.owned--
			ps.owner = nil
		} else {
			p.pool--
			p.noteAllOut(now)
		}
	}
	if p.pool == 0 && !pr.lastHave.IsZero() && !p.allOutAt.IsZero() && pr.lastHave.After(p.allOutAt) {
		p.haveGap = ewma(p.haveGap, now.Sub(pr.lastHave))
	}
	pr.lastHave = now
	if pr.rescued && pr.sentTo[i] < p.length(i) {
		pr.rescued = false // it got a piece from someone else: it has peers again
	}
	delete(pr.sentTo, i)
	return pr.complete(p.numPieces)
}

func (p *policy) noteAllOut(now time.Time) {
	if p.pool == 0 {
		p.allOutAt = now
	}
}

func ewma(avg, sample time.Duration) time.Duration {
	if avg == 0 {
		return sample
	}
	return (avg*7 + sample) / 8
}

// haveAll records that pr has every piece.
func (p *policy) haveAll(pr *peer, now time.Time) {
	for i := 0; i < p.numPieces; i++ {
		p.have(pr, i, now)
	}
}

// verdict is the policy's answer to a request.
type verdict bool

const (
	serve  verdict = true
	refuse verdict = false
)

// request decides whether pr gets a block of piece i.
func (p *policy) request(pr *peer, i int, now time.Time) verdict {
	if pr.serveAll {
		return serve
	}
	if pr.hasPiece(i) {
		return refuse
	}
	ps := &p.pieces[i]
	switch {
	case ps.delivered:
	case ps.owner == pr:
		ps.lastReq = now
		return serve
	case ps.owner == nil:
		if pr.rescued || pr.owned < p.cfg.ownCap || p.alone(pr) {
			ps.owner, ps.lastReq = pr, now
			pr.owned++
			p.pool--
			p.noteAllOut(now)
			return serve
		}
	}
	if !pr.rescued && p.starving(pr, now) {
		pr.rescued = true
	}
	if pr.rescued {
		return serve
	}
	return refuse
}

// alone reports whether pr is the only connection downloading.
func (p *policy) alone(pr *peer) bool {
	for o := range p.peers {
		if o != pr && o.interested && !o.complete(p.numPieces) {
			return false
		}
	}
	return true
}

// starving reports whether pr lacks pieces, wants them, and has reported
// none for starveLimit while every piece is out.
func (p *policy) starving(pr *peer, now time.Time) bool {
	if p.pool > 0 || !pr.interested || pr.complete(p.numPieces) {
		return false
	}
	last := pr.since
	if pr.lastHave.After(last) {
		last = pr.lastHave
	}
	if p.allOutAt.After(last) {
		last = p.allOutAt
	}
	return now.Sub(last) >= p.starveLimit()
}

// starveLimit is how long a connection may go without reporting a piece
// before it starves: cfg.starveAfter, or four times the usual gap between a
// healthy host's reports if that is longer, at most 8 × cfg.starveAfter.
func (p *policy) starveLimit() time.Duration {
	return min(max(p.cfg.starveAfter, 4*p.haveGap), 8*p.cfg.starveAfter)
}

// sent records that a block went out to pr; it returns how many of its bytes
// had been sent before (to anyone). A block sent to its piece's owner counts
// as the owner still working on it.
func (p *policy) sent(pr *peer, r request, now time.Time) (resent int64) {
	i := int(r.index)
	ps := &p.pieces[i]
	if ps.owner == pr {
		ps.lastReq = now
	}
	if ps.sent == nil {
		ps.sent = make([]uint64, (p.length(i)+blockUnit*64-1)/(blockUnit*64))
	}
	end := int64(r.begin) + int64(r.length)
	for u := int64(r.begin) / blockUnit; u*blockUnit < end; u++ {
		lo, hi := max(u*blockUnit, int64(r.begin)), min((u+1)*blockUnit, end)
		w, bit := u/64, uint64(1)<<(u%64)
		if ps.sent[w]&bit != 0 {
			resent += hi - lo
		}
		ps.sent[w] |= bit
	}
	if _, ok := p.peers[pr]; ok {
		pr.sentTo[i] += int64(r.length)
	}
	return resent
}

// poke is a connection to nudge with a Suggest Piece for piece.
type poke struct {
	peer  *peer
	piece int
}

// tick gives back pieces whose owners went quiet, marks starving
// connections rescued, and returns the idle connections worth poking: those
// that could be served now. idle reports whether a connection has nothing
// queued or being sent.
func (p *policy) tick(now time.Time, idle func(*peer) bool) []poke {
	for i := range p.pieces {
		ps := &p.pieces[i]
		if ps.owner != nil && now.Sub(ps.lastReq) >= p.cfg.ownerIdle {
			p.release(i)
		}
	}
	var pokes []poke
	for pr := range p.peers {
		if pr.serveAll || !pr.interested || pr.complete(p.numPieces) {
			continue
		}
		if !pr.rescued && p.starving(pr, now) {
			pr.rescued = true
		}
		if now.Sub(pr.lastPoke) < p.cfg.pokeEvery || !idle(pr) {
			continue
		}
		var piece int
		switch {
		case pr.rescued:
			piece = p.firstMissing(pr, false)
		case p.pool > 0 && (pr.owned < p.cfg.ownCap || p.alone(pr)):
			piece = p.firstMissing(pr, true)
		default:
			continue
		}
		if piece < 0 {
			continue
		}
		pr.lastPoke = now
		pokes = append(pokes, poke{pr, piece})
	}
	return pokes
}

// firstMissing returns the lowest piece pr lacks (and, with fromPool, that is
// in the pool), or -1.
func (p *policy) firstMissing(pr *peer, fromPool bool) int {
	for w, word := range pr.has {
		missing := ^word
		for missing != 0 {
			i := w*64 + bits.TrailingZeros64(missing)
			if i >= p.numPieces {
				return -1
			}
			missing &= missing - 1
			if !fromPool || (!p.pieces[i].delivered && p.pieces[i].owner == nil) {
				return i
			}
		}
	}
	return -1
}

package seed

import (
	"math/bits"
	"sync/atomic"
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
// seeder says it has everything (HaveAll) and answers each request with one
// of three verdicts:
//
//   - serve: a piece nobody has received yet goes to the first connection
//     that asks for it, which then owns it until it reports the piece (HAVE)
//     or leaves. A lone host therefore gets everything at the seeder's full
//     rate, and many hosts get disjoint pieces. A connection owns at most
//     maxActive pieces with blocks waiting to be sent: its asks for more
//     are held until one is sent, and stay in the pool for the others
//     meanwhile. A node asks for its whole request window at once (up to
//     250 blocks, 64 MiB), so without the cap a host whose link is slow
//     owned every piece it asked for, and a fast host asking for one was
//     held until it trickled through the slow one.
//   - hold: a request for a piece another connection owns and is pulling
//     waits unanswered and is decided again later (see conn.recheck). A
//     reject would be simpler, but each one lowers the anacrolix node's
//     request budget with that peer (peakRequests); after a few it keeps one
//     request outstanding, for the first piece in its own fixed random order
//     among the rarest, and stops pulling even the pieces it owns while
//     another node owns that one. A held request keeps its place and the
//     node keeps pulling its other pieces.
//   - refuse (the fast extension's Reject Request, BEP 6): a piece some host
//     has reported is not sent again; the node then asks a peer for it.
//     Except to a starving connection: one that is interested, lacks pieces,
//     owns none, waits for no owner (no held request) and has reported no
//     piece for starveLimit. It is rescued: served whatever it asks until it
//     reports a piece the seeder did not send it (it has another source
//     again).
//
// A piece reported by one host only that no other host reported for
// spreadLimit is stuck: its one holder does not pass it on (its link was
// cut, it hangs, it is gone). The next connection that asks for it is
// served once, as if it were undelivered, and is poked to ask; a healthy
// swarm passes a fresh piece on within a few piece times (the nodes fetch
// the rarest pieces first), so this costs a resend only where a holder
// failed.
//
// An owner with no request of its piece waiting, that has neither asked for
// nor been sent a block of it for ownerGrace, loses it to the next
// connection that asks (the bytes it got are sent again, Stats.Resent),
// unless it was sent all of it (its report is on the way, sentWhole), and
// gives it back to the pool after ownerIdle. Owners do go idle: a node's
// requests come in bursts in its own order; a burst often ends inside a
// free piece, and the node asks for the rest only once the held requests
// ahead of it in its order are answered. (An ownership cap per connection
// was tried: it only adds that case at the cap, and deadlocks when every
// node is at the cap with idle pieces.)
//
// A node whose requests were all refused or held asks that peer for nothing
// more until something else happens on the connection, so the seeder pokes
// connections with nothing served pending that could be served (a piece is
// undelivered, or they are rescued) with a Suggest Piece, which makes the
// node plan its requests again.
//
// A served block waits for a sending slot, seconds on a slow link; when
// its turn comes it is sent only if the policy would still serve it
// (stale): a host that had the piece from a peer meanwhile gets a reject
// instead.
type policy struct {
	cfg       policyConfig
	numPieces int
	pieceLen  int64
	lastLen   int64

	pieces []pieceState
	peers  map[*peer]struct{}
	// pool counts pieces neither delivered nor owned: never sent, or given
	// back by an owner.
	pool int
	// undelivered counts pieces no peer has reported.
	undelivered int
	// haveGap is a moving average of the time between two reports of one
	// peer, for pieces it got from its peers: how long a healthy host takes
	// per piece passed on.
	haveGap time.Duration
	// spreadGap is a moving average of the time from a piece's first report
	// to its second: how long a fresh piece takes to spread.
	spreadGap time.Duration
}

type policyConfig struct {
	maxActive   int           // pieces a connection may own with blocks waiting to be sent; 0: no limit
	starveAfter time.Duration // least time without a report before a connection starves
	ownerGrace  time.Duration // an owner idle this long on its piece loses it to a connection that asks
	ownerIdle   time.Duration // an owner idle this long on its piece gives it back
	pokeEvery   time.Duration // least time between two pokes of one connection
}

// resendCause is why the seeder sent bytes of a piece again.
type resendCause int

const (
	resendOther     resendCause = iota // the same connection asked again, or a peer without the fast extension
	resendRescue                       // to a starving connection
	resendStuck                        // a piece whose one holder did not pass it on
	resendIdleOwner                    // a piece taken from, or given back by, an owner gone quiet on it
	resendOwnerLeft                    // a piece whose owner closed its connection before reporting it
	numResendCauses
)

// blockUnit is the granularity at which the policy remembers which bytes of
// a piece were sent (for Stats.Resent).
const blockUnit = 16 << 10

type pieceState struct {
	owner *peer
	// ownerQueued counts the owner's requests for the piece that were
	// served and not sent yet; ownerSeen is the owner's last request for it
	// or the last block of it sent to the owner.
	ownerQueued int
	ownerSeen   time.Time
	delivered   bool     // some peer reported it
	sent        []uint64 // blockUnits sent at least once
	// reports counts the peers that reported it; spreadSince is when it
	// last had one holder only (its first report, or a stuck serve).
	reports     int
	spreadSince time.Time
	// holder is the peer that reported it first: while it is the only
	// one, the piece's fate hangs on it.
	holder *peer
	// lost is how the piece last lost an owner before anyone reported it
	// (resendIdleOwner, resendOwnerLeft; resendOther: never): what its
	// next owner is sent again is put down to that.
	lost resendCause
}

// peer is the policy's view of one connection.
type peer struct {
	has   []uint64
	nHave int
	owned int
	// active counts the pieces it owns with served requests waiting to be
	// sent (ownerQueued > 0).
	active     int
	interested bool
	// serveAll is for peers without the fast extension: they cannot be
	// refused, so they are served everything they ask for.
	serveAll bool
	rescued  bool
	gone     bool      // left unreachable
	since    time.Time // joined, or last became interested
	lastHave time.Time
	lastPoke time.Time
	sentTo   map[int]int64 // bytes sent to this peer, by piece not yet reported
	// host is shared by the host's connections for all the job's layers;
	// nil when the peer's host is not known (tests).
	host *hostRecord
}

// hostRecord is what the seeder knows of one host across its layers'
// connections: when it last reported a piece it got from its peers.
//
// A connection starves (policy.starving) only while its host hears from
// nobody on any layer. A host downloads all its layers at once through
// one link, and on a slow one a layer can go many seconds without a piece
// while the others take the link: at 2 Mbit/s, 40 hosts and 5 layers the
// seeder rescued 911 connections in a 346 s job, most of them of hosts
// busy downloading from their peers; with this rule, 177 (the image sent
// again did not shrink with them: it was mostly served blocks that went
// stale while they waited for a slot, see stale; docs/BENCHMARKS.md
// section 2). A host whose peers all failed
// hears from nobody on any layer, and is rescued as before.
type hostRecord struct {
	heard atomic.Int64 // Unix nanoseconds; 0: never
}

func (h *hostRecord) hear(now time.Time) {
	if h != nil {
		h.heard.Store(now.UnixNano())
	}
}

// last returns when the host last reported a piece from its peers; zero if
// never.
func (h *hostRecord) last() time.Time {
	if h == nil {
		return time.Time{}
	}
	if n := h.heard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// verdict is the policy's answer to a request.
type verdict int

const (
	serve verdict = iota
	hold
	refuse
)

func (v verdict) String() string {
	switch v {
	case serve:
		return "serve"
	case hold:
		return "hold"
	}
	return "refuse"
}

func newPolicy(l *layerInfo, cfg policyConfig) *policy {
	return &policy{
		cfg:         cfg,
		numPieces:   l.numPieces,
		pieceLen:    l.pieceLen,
		lastLen:     l.pieceLength(l.numPieces - 1),
		pieces:      make([]pieceState, l.numPieces),
		peers:       make(map[*peer]struct{}),
		pool:        l.numPieces,
		undelivered: l.numPieces,
	}
}

func (p *policy) length(i int) int64 {
	if i == p.numPieces-1 {
		return p.lastLen
	}
	return p.pieceLen
}

// join adds a connection.
func (p *policy) join(serveAll bool, host *hostRecord, now time.Time) *peer {
	pr := &peer{
		has:      make([]uint64, (p.numPieces+63)/64),
		serveAll: serveAll,
		since:    now,
		sentTo:   make(map[int]int64),
		host:     host,
	}
	p.peers[pr] = struct{}{}
	return pr
}

// leave removes a connection; the pieces it owned go back to the pool,
// except those it was sent all of: an anacrolix node closes its connection
// to a seeder as soon as it has every piece, sometimes before its last
// reports leave, so it most likely has them. A peer that left unreachable
// (its link is down) has nothing it can pass on: every piece it owned goes
// back to the pool, and the pieces it alone reported are stuck at once.
func (p *policy) leave(pr *peer, now time.Time, unreachable bool) {
	if _, ok := p.peers[pr]; !ok {
		return
	}
	delete(p.peers, pr)
	pr.gone = unreachable
	for i := range p.pieces {
		if p.pieces[i].owner != pr {
			continue
		}
		if pr.sentTo[i] >= p.length(i) && !unreachable {
			p.deliver(i)
			// Most likely it has the piece and passes it on: as if it had
			// reported it.
			if ps := &p.pieces[i]; ps.reports == 0 {
				ps.reports, ps.spreadSince = 1, now
			}
		} else {
			p.release(i, resendOwnerLeft)
		}
	}
}

// deliver marks piece i reported by some peer.
func (p *policy) deliver(i int) {
	ps := &p.pieces[i]
	if ps.delivered {
		return
	}
	ps.delivered = true
	p.undelivered--
	if ps.owner != nil {
		p.setQueued(ps, 0)
		ps.owner.owned--
		ps.owner = nil
	} else {
		p.pool--
	}
}

// ownerIdleFor reports whether piece i's owner has been idle on it for d:
// no request of it waiting, none made and no block sent.
func (p *policy) ownerIdleFor(i int, d time.Duration, now time.Time) bool {
	ps := &p.pieces[i]
	return ps.ownerQueued == 0 && now.Sub(ps.ownerSeen) >= d
}

// sentWhole reports whether pr was sent every block of piece i. Such an
// owner most likely has the piece and reports it once the last block
// has crossed its link; taking the piece from it for want of requests
// would send it all again. At 2 Mbit/s and 40 hosts that was most of
// what the seeder sent twice (docs/BENCHMARKS.md section 2). It still
// gives the piece back after ownerIdle (tick), or when it leaves.
func (p *policy) sentWhole(pr *peer, i int) bool { return pr.sentTo[i] >= p.length(i) }

// stale reports whether a block of piece i served to pr is no longer
// worth sending when its turn to be sent comes: pr reported the piece, or
// another host did and pr is neither rescued nor the piece's stuck serve
// (policy.request would refuse it now). At a slow seeder a served block
// can wait seconds for a sending slot, and hosts pass pieces on
// meanwhile.
func (p *policy) stale(pr *peer, i int) bool {
	if pr.serveAll {
		return false
	}
	ps := &p.pieces[i]
	return pr.hasPiece(i) || ps.delivered && !pr.rescued && ps.holder != pr
}

// release gives piece i back to the pool; why is how its owner lost it.
func (p *policy) release(i int, why resendCause) {
	ps := &p.pieces[i]
	ps.lost = why
	p.setQueued(ps, 0)
	ps.owner.owned--
	ps.owner = nil
	p.pool++
}

// setQueued sets how many of its owner's served requests of the piece wait
// to be sent, and keeps the owner's count of such pieces.
func (p *policy) setQueued(ps *pieceState, n int) {
	if ps.owner != nil {
		switch {
		case ps.ownerQueued == 0 && n > 0:
			ps.owner.active++
		case ps.ownerQueued > 0 && n == 0:
			ps.owner.active--
		}
	}
	ps.ownerQueued = n
}

// full reports whether pr owns as many pieces with blocks waiting to be
// sent as it may: it is given no other piece until one is sent.
func (p *policy) full(pr *peer) bool {
	return p.cfg.maxActive > 0 && pr.active >= p.cfg.maxActive
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
	p.deliver(i)
	ps := &p.pieces[i]
	ps.reports++
	switch ps.reports {
	case 1:
		ps.spreadSince, ps.holder = now, pr
	case 2:
		p.spreadGap = ewma(p.spreadGap, now.Sub(ps.spreadSince))
	}
	if fromPeers := pr.sentTo[i] < p.length(i); fromPeers {
		if !pr.lastHave.IsZero() {
			p.haveGap = ewma(p.haveGap, now.Sub(pr.lastHave))
		}
		pr.host.hear(now)
		pr.rescued = false // it has a source besides the seeder again
	}
	pr.lastHave = now
	delete(pr.sentTo, i)
	return pr.complete(p.numPieces)
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

// request decides what to do with pr's request for a block of piece i. A
// held request is asked about again later; every served request of a
// piece's owner must be followed by sent or dropped.
func (p *policy) request(pr *peer, i int, now time.Time) verdict {
	if pr.serveAll {
		return serve
	}
	if pr.hasPiece(i) {
		return refuse
	}
	ps := &p.pieces[i]
	switch {
	case ps.delivered && p.stuck(i, now):
		// Served once; the requester is its second holder to come, and
		// the one the piece's fate now hangs on.
		ps.spreadSince, ps.holder = now, pr
		return serve
	case ps.delivered:
	case ps.owner == pr:
		p.setQueued(ps, ps.ownerQueued+1)
		ps.ownerSeen = now
		return serve
	case ps.owner == nil || p.ownerIdleFor(i, p.cfg.ownerGrace, now) && !p.sentWhole(ps.owner, i):
		if p.full(pr) {
			return hold // until one of its pieces is sent (conn.sendBlock rechecks)
		}
		if ps.owner == nil {
			p.pool--
		} else {
			ps.owner.owned-- // taken over: what it got of the piece is sent again
			ps.lost = resendIdleOwner
		}
		ps.owner, ps.ownerSeen = pr, now // an idle owner has nothing queued
		p.setQueued(ps, 1)
		pr.owned++
		return serve
	case !pr.rescued:
		return hold
	}
	if pr.rescued {
		return serve
	}
	return refuse
}

// dropped records that a served request will not be sent after all (the
// peer cancelled it).
func (p *policy) dropped(pr *peer, r request) {
	if ps := &p.pieces[r.index]; ps.owner == pr && ps.ownerQueued > 0 {
		p.setQueued(ps, ps.ownerQueued-1)
	}
}

// stuck reports whether piece i was reported by one host only, and by no
// other for spreadLimit; or whether that one holder left unreachable; or,
// sooner than spreadLimit, whether that one holder went quiet:
// it still lacks pieces but has reported none for starveLimit (its link
// was cut, it hangs, it is gone). A healthy downloading host reports a
// piece every few piece times, and one whose link is cut still has an
// open connection here until TCP gives up, so the silence is what tells;
// without this rule every host waited spreadLimit (up to 24 s) for the
// pieces a cut host alone held.
func (p *policy) stuck(i int, now time.Time) bool {
	ps := &p.pieces[i]
	if !ps.delivered || ps.reports > 1 || ps.spreadSince.IsZero() {
		return false
	}
	if now.Sub(ps.spreadSince) >= p.spreadLimit() {
		return true
	}
	h := ps.holder
	if h != nil && h.gone {
		return true
	}
	return h != nil && !h.complete(p.numPieces) && now.Sub(h.lastHave) >= p.starveLimit() && now.Sub(ps.spreadSince) >= p.cfg.starveAfter
}

// spreadLimit is how long a piece may have one holder before it is stuck:
// four times the usual time a fresh piece takes to reach a second host,
// within [cfg.starveAfter, 8 × cfg.starveAfter].
func (p *policy) spreadLimit() time.Duration {
	return min(max(p.cfg.starveAfter, 4*p.spreadGap), 8*p.cfg.starveAfter)
}

// starving reports whether pr lacks pieces and wants them, owns none, waits
// for no owner (held is its number of held requests), and has reported
// none for starveLimit.
func (p *policy) starving(pr *peer, held int, now time.Time) bool {
	if !pr.interested || pr.complete(p.numPieces) || pr.owned > 0 || held > 0 {
		return false
	}
	last := pr.since
	if h := pr.lastHeard(); h.After(last) {
		last = h
	}
	return now.Sub(last) >= p.starveLimit()
}

// lastHeard is when pr last reported a piece, or its host a piece from its
// peers on another layer's connection (hostRecord), whichever is later.
func (pr *peer) lastHeard() time.Time {
	if h := pr.host.last(); h.After(pr.lastHave) {
		return h
	}
	return pr.lastHave
}

// starveLimit is how long a connection may go without reporting a piece
// before it starves: cfg.starveAfter, or four times the usual gap between a
// healthy host's reports of pieces from its peers if that is longer, at
// most 8 × cfg.starveAfter.
func (p *policy) starveLimit() time.Duration {
	return min(max(p.cfg.starveAfter, 4*p.haveGap), 8*p.cfg.starveAfter)
}

// sent records that a block went out to pr; it returns how many of its bytes
// had been sent before (to anyone), and why they went again.
func (p *policy) sent(pr *peer, r request, now time.Time) (resent int64, why resendCause) {
	i := int(r.index)
	ps := &p.pieces[i]
	if ps.owner == pr {
		if ps.ownerQueued > 0 {
			p.setQueued(ps, ps.ownerQueued-1)
		}
		ps.ownerSeen = now
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
	if _, ok := p.peers[pr]; ok && !pr.hasPiece(i) {
		pr.sentTo[i] += int64(r.length)
	}
	switch {
	case resent == 0:
	case pr.rescued:
		why = resendRescue
	case ps.delivered: // not stale, so pr is the piece's stuck serve
		why = resendStuck
	case ps.owner == pr:
		why = ps.lost
	}
	return resent, why
}

// poke is a connection to nudge with a Suggest Piece for piece.
type poke struct {
	peer  *peer
	piece int
}

// connState is what the policy needs to know of a connection's requests.
type connState struct {
	idle bool // nothing served is queued or being sent
	held int  // requests held
}

// tick gives back pieces whose owners went quiet, marks starving
// connections rescued (and returns those), and returns the connections worth
// poking: those with nothing served pending that could be served now.
//
// While the seeder is saturated (more blocks are waiting for a sending
// slot than it has slots), a poke towards an undelivered piece only adds
// to that queue: it is left out, and made once a slot has no block
// waiting. On a 2 Mbit/s bastion with 40 hosts the pokes were 187 Suggest
// Piece messages a second, each a 61-byte packet on the bastion's link
// (11 kB/s, 5 % of it; docs/BENCHMARKS.md section 2). The rescued and
// the stuck are poked either way: they have no other source.
func (p *policy) tick(now time.Time, saturated bool, state func(*peer) connState) (pokes []poke, rescued []*peer) {
	for i := range p.pieces {
		ps := &p.pieces[i]
		if ps.owner != nil && p.ownerIdleFor(i, p.cfg.ownerIdle, now) {
			p.release(i, resendIdleOwner)
		}
	}
	for pr := range p.peers {
		if pr.serveAll || !pr.interested || pr.complete(p.numPieces) {
			continue
		}
		st := state(pr)
		if !pr.rescued && p.starving(pr, st.held, now) {
			pr.rescued = true
			rescued = append(rescued, pr)
		}
		if now.Sub(pr.lastPoke) < p.cfg.pokeEvery || !st.idle {
			continue
		}
		piece := -1
		switch {
		case pr.rescued:
			piece = p.firstMissing(pr, false)
		case p.undelivered > 0 && !saturated:
			piece = p.firstMissing(pr, true)
		}
		if piece < 0 {
			piece = p.firstStuck(pr, now)
		}
		if piece < 0 {
			continue
		}
		pr.lastPoke = now
		pokes = append(pokes, poke{pr, piece})
	}
	return pokes, rescued
}

// firstStuck returns the lowest stuck piece pr lacks, or -1.
func (p *policy) firstStuck(pr *peer, now time.Time) int {
	for i := range p.pieces {
		if !pr.hasPiece(i) && p.stuck(i, now) {
			return i
		}
	}
	return -1
}

// firstMissing returns the lowest piece pr lacks (and, with undelivered,
// that nobody has reported), or -1.
func (p *policy) firstMissing(pr *peer, undelivered bool) int {
	for w, word := range pr.has {
		missing := ^word
		for missing != 0 {
			i := w*64 + bits.TrailingZeros64(missing)
			if i >= p.numPieces {
				return -1
			}
			missing &= missing - 1
			if !undelivered || !p.pieces[i].delivered {
				return i
			}
		}
	}
	return -1
}

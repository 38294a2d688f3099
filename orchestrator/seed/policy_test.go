package seed

import (
	"slices"
	"testing"
	"time"
)

const testPieceLen = 256 << 10

// busyConns and idleConns describe every connection to policy.tick.
func busyConns(*peer) connState { return connState{} }
func idleConns(*peer) connState { return connState{idle: true} }

var testPolicyConfig = policyConfig{
	starveAfter: 3 * time.Second,
	ownerGrace:  time.Second,
	ownerIdle:   5 * time.Second,
	pokeEvery:   250 * time.Millisecond,
}

// policyFixture is a policy for a torrent of n full pieces and a clock.
type policyFixture struct {
	t   *testing.T
	p   *policy
	now time.Time
}

func newPolicyFixture(t *testing.T, n int) *policyFixture {
	l := &layerInfo{length: int64(n) * testPieceLen, pieceLen: testPieceLen, numPieces: n}
	return &policyFixture{t: t, p: newPolicy(l, testPolicyConfig), now: time.Unix(1000, 0)}
}

func (f *policyFixture) advance(d time.Duration) { f.now = f.now.Add(d) }

// downloader joins a fast-extension peer that wants the torrent.
func (f *policyFixture) downloader() *peer {
	pr := f.p.join(false, nil, f.now)
	f.p.setInterested(pr, true, f.now)
	return pr
}

func (f *policyFixture) expect(pr *peer, piece int, want verdict) {
	f.t.Helper()
	if got := f.p.request(pr, piece, f.now); got != want {
		f.t.Fatalf("request for piece %d: %v, want %v", piece, got, want)
	}
}

// send records that all of piece i went out to pr.
func (f *policyFixture) send(pr *peer, i int) int64 {
	r, _ := f.sendWhy(pr, i)
	return r
}

// sendWhy is send, and also returns why the bytes sent again went.
func (f *policyFixture) sendWhy(pr *peer, i int) (int64, resendCause) {
	return f.p.sent(pr, request{index: uint32(i), length: testPieceLen}, f.now)
}

// deliver has pr ask for piece i, be served all of it and report it.
func (f *policyFixture) deliver(pr *peer, i int) {
	f.t.Helper()
	f.expect(pr, i, serve)
	f.send(pr, i)
	f.p.have(pr, i, f.now)
}

func TestPolicy_GivesEachNeverSentPieceToOneConnection(t *testing.T) {
	f := newPolicyFixture(t, 8)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.expect(b, 0, hold) // a owns it
	f.expect(b, 1, serve)
	f.expect(a, 1, hold) // b owns it
	f.send(a, 0)
	f.p.have(a, 0, f.now)
	// Once a reports it, b gets piece 0 from a, not from the seeder.
	f.expect(b, 0, refuse)
}

func TestPolicy_ServesALonePeerEverythingInOrder(t *testing.T) {
	f := newPolicyFixture(t, 16)
	f.p.join(false, nil, f.now) // a host that has not started this layer
	a := f.downloader()
	for i := 0; i < 16; i++ {
		f.expect(a, i, serve)
	}
	for i := 0; i < 16; i++ {
		if r := f.send(a, i); r != 0 {
			t.Fatalf("piece %d: %d bytes counted as resent", i, r)
		}
	}
}

func TestPolicy_GivesThePieceOfAConnectionThatLeftToAnother(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.p.sent(a, request{index: 0, length: 16 << 10}, f.now)
	f.expect(b, 0, hold)
	f.p.leave(a, f.now, false) // before it reported the piece
	f.expect(b, 0, serve)
	if r := f.send(b, 0); r != 16<<10 {
		t.Errorf("resent %d bytes, want the %d a got", r, 16<<10)
	}
}

func TestPolicy_AnOwnerThatLeftWithAllOfItsPieceCountsAsHavingIt(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.send(a, 0)
	f.expect(a, 1, serve)
	f.p.sent(a, request{index: 1, length: 16 << 10}, f.now)
	f.p.leave(a, f.now, false) // finished and hung up before its reports arrived
	f.expect(b, 0, refuse)
	f.expect(b, 1, serve)
}

func TestPolicy_AnIdleOwnerLosesItsPieceToAConnectionThatAsks(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.p.sent(a, request{index: 0, length: 16 << 10}, f.now) // a's only request, sent
	f.advance(testPolicyConfig.ownerGrace / 2)
	f.expect(b, 0, hold)
	f.advance(testPolicyConfig.ownerGrace / 2)
	f.expect(b, 0, serve)
	f.expect(a, 0, hold) // b owns it now
}

func TestPolicy_AnOwnerSentAllOfItsPieceKeepsItWhileItsLastBlocksTravel(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.send(a, 0) // every block handed to a's link; its report is on the way
	f.advance(testPolicyConfig.ownerGrace)
	f.expect(b, 0, hold)
	// A report that never comes: the piece goes back after ownerIdle.
	f.advance(testPolicyConfig.ownerIdle - testPolicyConfig.ownerGrace)
	f.p.tick(f.now, false, busyConns)
	f.expect(b, 0, serve)
}

func TestPolicy_AServedBlockGoesStaleOnceItsPeerCanHaveThePieceElsewhere(t *testing.T) {
	f := newPolicyFixture(t, 4)
	b := f.downloader()
	f.deliver(b, 0)
	f.deliverEverything() // its peers got the rest; then vanish
	y := f.downloader()
	for i := 1; i < 4; i++ {
		f.p.have(y, i, f.now) // two holders each: no piece is stuck
	}
	f.advance(testPolicyConfig.starveAfter)
	if _, rescued := f.p.tick(f.now, false, idleConns); !slices.Contains(rescued, b) {
		t.Fatalf("rescued %v, want b", rescued)
	}
	f.expect(b, 1, serve)
	f.expect(b, 2, serve)
	if f.p.stale(b, 1) {
		t.Error("a rescued host's block went stale")
	}
	f.p.have(b, 3, f.now) // from a peer: b has a source again
	if !f.p.stale(b, 1) || !f.p.stale(b, 3) {
		t.Error("blocks of pieces b can have from its peers, or has, are still worth sending")
	}
	// An owner's block of a piece nobody reported stays worth sending.
	g := newPolicyFixture(t, 4)
	a := g.downloader()
	g.expect(a, 0, serve)
	if g.p.stale(a, 0) {
		t.Error("an owner's block of an undelivered piece went stale")
	}
}

func TestPolicy_AnOwnerWithARequestWaitingKeepsItsPiece(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve) // queued, not sent yet
	f.advance(10 * testPolicyConfig.ownerIdle)
	f.expect(b, 0, hold)
	f.p.tick(f.now, false, func(*peer) connState { return connState{held: 1} })
	f.expect(b, 0, hold)
}

func TestPolicy_AnIdleOwnerGivesItsPieceBack(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, _ := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.send(a, 0)
	if f.p.pool != 3 {
		t.Fatalf("pool %d, want 3", f.p.pool)
	}
	f.advance(testPolicyConfig.ownerIdle)
	f.p.tick(f.now, false, busyConns)
	if f.p.pool != 4 || a.owned != 0 {
		t.Errorf("after ownerIdle: pool %d, a owns %d; want 4 and 0", f.p.pool, a.owned)
	}
}

// deliverEverything has a fresh peer take every piece nobody reported yet
// from the seeder, and end up with all of them.
func (f *policyFixture) deliverEverything() *peer {
	f.t.Helper()
	x := f.downloader()
	for i := 0; i < f.p.numPieces; i++ {
		if !f.p.pieces[i].delivered {
			f.expect(x, i, serve)
			f.send(x, i)
		}
		f.p.have(x, i, f.now)
	}
	return x
}

func TestPolicy_SendsNothingAgainToHealthyConnections(t *testing.T) {
	f := newPolicyFixture(t, 4)
	b := f.downloader()
	f.p.setInterested(b, false, f.now) // b has not started this layer yet
	f.deliverEverything()
	f.p.setInterested(b, true, f.now)
	for i := 0; i < 4; i++ {
		f.expect(b, i, refuse)
	}
	// b gets pieces from its peers and reports them: it never starves.
	for i := 0; i < 3; i++ {
		f.advance(testPolicyConfig.starveAfter - time.Millisecond)
		f.p.have(b, i, f.now)
		f.expect(b, 3, refuse)
	}
	if pokes, _ := f.p.tick(f.now, false, idleConns); len(pokes) != 0 {
		t.Errorf("poked %d healthy connections", len(pokes))
	}
}

func TestPolicy_RescuesAStarvingConnection(t *testing.T) {
	f := newPolicyFixture(t, 4)
	b := f.downloader()
	f.deliver(b, 0)
	f.deliverEverything() // its peer got the rest; then vanishes
	f.advance(testPolicyConfig.starveAfter - time.Millisecond)
	f.expect(b, 1, refuse)
	f.advance(time.Millisecond)
	pokes, rescued := f.p.tick(f.now, false, idleConns)
	if len(pokes) != 1 || pokes[0].peer != b || pokes[0].piece != 1 {
		t.Fatalf("pokes %+v, want b with piece 1", pokes)
	}
	if len(rescued) != 1 || rescued[0] != b {
		t.Fatalf("rescued %v, want b", rescued)
	}
	f.deliver(b, 1)
	if !b.rescued {
		t.Fatal("rescue ended with a piece the seeder sent")
	}
	f.p.have(b, 2, f.now) // from a peer: b has a source again
	if b.rescued {
		t.Fatal("still rescued after a piece from elsewhere")
	}
	f.expect(b, 3, refuse)
}

func TestPolicy_ALayerOfAHostThatHearsFromItsPeersIsNotStarving(t *testing.T) {
	// One host, two layers: a connection to each, sharing the host's record.
	layer1, layer2 := newPolicyFixture(t, 4), newPolicyFixture(t, 4)
	host := &hostRecord{}
	quiet := layer1.p.join(false, host, layer1.now)
	layer1.p.setInterested(quiet, true, layer1.now)
	busy := layer2.p.join(false, host, layer2.now)
	layer2.p.setInterested(busy, true, layer2.now)
	layer1.deliver(quiet, 0)
	layer1.deliverEverything() // another host has the rest of layer 1

	// Layer 2 takes the host's link: a piece from its peers every second.
	limit := layer1.p.starveLimit()
	for i := range 3 {
		step := limit / 2
		layer1.advance(step)
		layer2.advance(step)
		layer2.p.have(busy, i, layer2.now)
		if _, rescued := layer1.p.tick(layer1.now, false, idleConns); len(rescued) != 0 {
			t.Fatalf("after %v: rescued a layer of a host that receives from its peers", time.Duration(i+1)*step)
		}
	}
	// The host stops hearing from anyone: its quiet layer is rescued.
	layer1.advance(limit)
	if _, rescued := layer1.p.tick(layer1.now, false, idleConns); len(rescued) != 1 || rescued[0] != quiet {
		t.Fatalf("rescued %v, want the quiet layer's connection once the host hears nothing", rescued)
	}
}

func TestPolicy_AConnectionWaitingForAnOwnerIsNotStarving(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.expect(b, 0, hold)
	f.advance(10 * testPolicyConfig.starveAfter)
	f.p.tick(f.now, false, func(pr *peer) connState {
		if pr == b {
			return connState{idle: true, held: 1}
		}
		return connState{}
	})
	if b.rescued || a.rescued {
		t.Error("rescued a connection that waits for an owner or owns a piece")
	}
}

func TestPolicy_StarvingWaitsLongerWhenHostsTakeLongerPerPiece(t *testing.T) {
	f := newPolicyFixture(t, 4)
	f.p.haveGap = 2 * time.Second
	if got := f.p.starveLimit(); got != 8*time.Second {
		t.Errorf("limit %v, want 4 × 2s", got)
	}
	f.p.haveGap = time.Minute
	if got := f.p.starveLimit(); got != 8*testPolicyConfig.starveAfter {
		t.Errorf("limit %v, want the cap %v", got, 8*testPolicyConfig.starveAfter)
	}
}

func TestPolicy_PokesIdleConnectionsThatCouldBeServed(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	f.p.join(false, nil, f.now) // not interested: never poked
	busy := map[*peer]bool{b: true}
	idle := func(pr *peer) connState { return connState{idle: !busy[pr]} }
	pokes, _ := f.p.tick(f.now, false, idle)
	if len(pokes) != 1 || pokes[0].peer != a || pokes[0].piece != 0 {
		t.Fatalf("pokes %+v, want a with piece 0 only", pokes)
	}
	if pokes, _ := f.p.tick(f.now, false, idle); len(pokes) != 0 {
		t.Errorf("poked again within pokeEvery: %+v", pokes)
	}
	f.advance(testPolicyConfig.pokeEvery)
	busy[b] = false
	if pokes, _ := f.p.tick(f.now, false, idle); len(pokes) != 2 {
		t.Errorf("pokes %+v, want a and b", pokes)
	}
}

func TestPolicy_PokesNoneTowardsUndeliveredPiecesWhileSaturated(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	idle := func(*peer) connState { return connState{idle: true} }
	b.rescued = true // starving: it has no other source
	pokes, _ := f.p.tick(f.now, true, idle)
	if len(pokes) != 1 || pokes[0].peer != b {
		t.Fatalf("saturated: pokes %+v, want the rescued b only", pokes)
	}
	f.advance(testPolicyConfig.pokeEvery)
	pokes, _ = f.p.tick(f.now, false, idle)
	if len(pokes) != 2 || !slices.ContainsFunc(pokes, func(p poke) bool { return p.peer == a }) {
		t.Errorf("a sending slot free: pokes %+v, want a and b", pokes)
	}
}

func TestPolicy_CountsBytesSentAgain(t *testing.T) {
	f := newPolicyFixture(t, 2)
	a, b := f.downloader(), f.downloader()
	blk := request{index: 0, begin: 32 << 10, length: 32 << 10}
	if r, _ := f.p.sent(a, blk, f.now); r != 0 {
		t.Errorf("first send counted %d resent", r)
	}
	if r, _ := f.p.sent(b, blk, f.now); r != 32<<10 {
		t.Errorf("second send counted %d resent, want %d", r, 32<<10)
	}
	overlap := request{index: 0, begin: 48 << 10, length: 32 << 10}
	if r, _ := f.p.sent(b, overlap, f.now); r != 16<<10 {
		t.Errorf("overlapping send counted %d resent, want %d", r, 16<<10)
	}
	if r, _ := f.p.sent(b, request{index: 1, length: 16 << 10}, f.now); r != 0 {
		t.Errorf("other piece counted %d resent", r)
	}
}

func TestPolicy_PutsEachResendDownToWhyThePieceWentAgain(t *testing.T) {
	f := newPolicyFixture(t, 8)
	a, b, c := f.downloader(), f.downloader(), f.downloader()
	half := request{index: 0, length: testPieceLen / 2}
	check := func(what string, pr *peer, i int, want resendCause) {
		t.Helper()
		f.expect(pr, i, serve)
		if r, why := f.sendWhy(pr, i); r == 0 || why != want {
			t.Errorf("%s: resent %d bytes for cause %d, want some for cause %d", what, r, why, want)
		}
	}
	// An owner that goes quiet on its piece loses it to one that asks.
	f.expect(a, 0, serve)
	f.p.sent(a, half, f.now)
	f.advance(testPolicyConfig.ownerGrace)
	check("taken from an idle owner", b, 0, resendIdleOwner)
	// An owner that leaves before it reports its piece.
	f.expect(c, 1, serve)
	f.p.sent(c, request{index: 1, length: testPieceLen / 2}, f.now)
	f.p.leave(c, f.now, false)
	check("its owner left", a, 1, resendOwnerLeft)
	// The same connection asking for what it was sent.
	f.expect(a, 2, serve)
	f.send(a, 2)
	check("asked again", a, 2, resendOther)
	// A piece its one holder does not pass on.
	f.p.have(a, 2, f.now)
	f.advance(f.p.spreadLimit())
	check("stuck", b, 2, resendStuck)
	// A connection that hears from nobody is rescued.
	d := f.downloader()
	f.p.have(b, 3, f.now)
	f.advance(f.p.starveLimit())
	if _, rescued := f.p.tick(f.now, false, idleConns); !slices.Contains(rescued, d) {
		t.Fatalf("rescued %v, want d among them", rescued)
	}
	f.p.sent(b, request{index: 3, length: testPieceLen}, f.now) // b had it from the seeder
	check("rescued", d, 3, resendRescue)
}

func TestPolicy_ServesEverythingToAPeerThatCannotBeRefused(t *testing.T) {
	f := newPolicyFixture(t, 2)
	f.deliverEverything()
	old := f.p.join(true, nil, f.now) // no fast extension
	f.expect(old, 0, serve)
	f.expect(old, 1, serve)
}

func TestPolicy_ReportsACompletePeer(t *testing.T) {
	f := newPolicyFixture(t, 3)
	a := f.downloader()
	for i, want := range []bool{false, false, true} {
		if got := f.p.have(a, i, f.now); got != want {
			t.Errorf("after piece %d complete=%v, want %v", i, got, want)
		}
	}
	if f.p.undelivered != 0 || f.p.pool != 0 {
		t.Errorf("undelivered %d, pool %d after every piece reported", f.p.undelivered, f.p.pool)
	}
}

func TestPolicy_APieceItsOnlyHolderDoesNotPassOnIsServedOnceMore(t *testing.T) {
	f := newPolicyFixture(t, 8)
	a, b, c := f.downloader(), f.downloader(), f.downloader()
	// Healthy spreading: piece 1 reaches a second host quickly.
	f.deliver(a, 1)
	f.advance(100 * time.Millisecond)
	f.p.have(b, 1, f.now)
	// Piece 0 goes to a, which reports it and then falls silent (its link
	// was cut): nobody else gets it from a.
	f.deliver(a, 0)
	f.expect(b, 0, refuse) // a has it: ask a
	f.advance(f.p.spreadLimit() - time.Millisecond)
	f.expect(b, 0, refuse)
	f.advance(time.Millisecond)
	// Stuck: b gets it from the seeder, once; c waits for b.
	f.expect(b, 0, serve)
	if r := f.send(b, 0); r != testPieceLen {
		t.Fatalf("resent %d bytes, want the piece's %d", r, testPieceLen)
	}
	f.expect(c, 0, refuse)
	// A piece with two holders is never stuck, however long it takes c.
	f.advance(time.Hour)
	f.expect(c, 1, refuse)
}

func TestPolicy_StuckPieceIsSuggestedToWhoLacksIt(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	for i := range 4 {
		f.deliver(a, i)
	}
	f.advance(f.p.spreadLimit())
	pokes, _ := f.p.tick(f.now, false, func(*peer) connState { return connState{idle: true} })
	var got []int
	for _, pk := range pokes {
		if pk.peer == b {
			got = append(got, pk.piece)
		}
		if pk.peer == a {
			t.Errorf("a was poked for piece %d it has", pk.piece)
		}
	}
	if len(got) != 1 || got[0] != 0 {
		t.Fatalf("b poked for %v, want piece 0 (stuck, lacking)", got)
	}
}

func TestPolicy_APieceWhoseOnlyHolderWentQuietIsServedBeforeTheSpreadLimit(t *testing.T) {
	f := newPolicyFixture(t, 8)
	a, b := f.downloader(), f.downloader()
	// Pieces take long to spread here (10 s to a second host), so the
	// spread limit is long.
	f.deliver(a, 1)
	f.advance(10 * time.Second)
	f.p.have(b, 1, f.now)
	if f.p.spreadLimit() < 20*time.Second {
		t.Fatalf("spread limit %v, want a long one for this test", f.p.spreadLimit())
	}
	// a reports piece 0, then keeps reporting others: it is healthy, and
	// its piece waits for the spread limit.
	f.deliver(a, 0)
	for i := 2; i < 5; i++ {
		f.advance(2 * time.Second)
		f.deliver(a, i)
		f.expect(b, 0, refuse)
	}
	// Then a falls silent, lacking pieces (its link was cut): once it has
	// reported nothing for the starve limit, b gets piece 4 from the
	// seeder, long before the spread limit.
	f.advance(f.p.starveLimit() - time.Millisecond)
	f.expect(b, 4, refuse)
	f.advance(time.Millisecond)
	f.expect(b, 4, serve)
}

func TestPolicy_APeerThatLeftUnreachableHoldsNothingUp(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b, c := f.downloader(), f.downloader(), f.downloader()
	// Piece 0 went to a, which reported it, and nobody else has it yet.
	f.deliver(a, 0)
	// a owns piece 1 with a request waiting: others are held.
	f.expect(a, 1, serve)
	f.expect(b, 1, hold)
	// Piece 2 was all sent to a, not reported yet.
	f.expect(a, 2, serve)
	f.send(a, 2)
	f.expect(b, 0, refuse) // a has it: ask a

	// a's link goes down and the seeder drops it: what it owned goes to
	// who asks, even what it was sent all of, and what it alone reported is
	// served at once, to one host.
	f.p.leave(a, f.now, true)
	f.expect(b, 1, serve)
	f.expect(c, 2, serve)
	f.expect(b, 0, serve)
	f.expect(c, 0, refuse) // b is its holder to come
}

func TestPolicy_APeerThatLeftReachableStillHoldsItsPieces(t *testing.T) {
	f := newPolicyFixture(t, 4)
	a, b := f.downloader(), f.downloader()
	for i := range 4 {
		f.deliver(a, i)
	}
	// a has everything and hangs up, as an anacrolix node does: its peers
	// get the pieces from it.
	f.p.leave(a, f.now, false)
	f.expect(b, 0, refuse)
}

// A node asks for its whole window at once. With a cap on the pieces it owns
// with blocks waiting, a slow host's asks beyond the cap stay in the pool
// and a fast host asking for them is served.
func TestPolicy_ASlowOwnerHoldsNoMoreThanItsCap(t *testing.T) {
	f := newPolicyFixture(t, 8)
	f.p.cfg.maxActive = 2
	slow, fast := f.downloader(), f.downloader()
	f.expect(slow, 0, serve)
	f.expect(slow, 1, serve)
	f.expect(slow, 2, hold) // at the cap: piece 2 stays in the pool
	f.expect(slow, 3, hold)
	f.expect(fast, 2, serve)
	f.expect(fast, 3, serve)
	f.expect(fast, 0, hold) // slow owns it and is pulling it
	// One of slow's pieces is sent: it may own another.
	f.send(slow, 0)
	f.expect(slow, 4, serve)
	f.expect(slow, 5, hold)
	if f.p.pool != 3 || slow.active != 2 || fast.active != 2 {
		t.Errorf("pool %d, slow active %d, fast active %d; want 3, 2, 2", f.p.pool, slow.active, fast.active)
	}
}

// The cap counts pieces with blocks waiting, not pieces owned: a lone host
// whose pieces are sent keeps getting the next ones, and more blocks of a
// piece it owns are never held.
func TestPolicy_ALonePeerUnderTheCapGetsEverything(t *testing.T) {
	f := newPolicyFixture(t, 16)
	f.p.cfg.maxActive = 2
	a := f.downloader()
	for i := 0; i < 16; i++ {
		f.expect(a, i, serve)
		f.expect(a, i, serve) // a second block of the same piece
		f.send(a, i)
		f.send(a, i)
	}
	if a.active != 0 || a.owned != 16 {
		t.Errorf("a: active %d, owned %d; want 0 and 16", a.active, a.owned)
	}
	// Reported pieces free nothing more: they were not waiting.
	for i := 0; i < 16; i++ {
		f.p.have(a, i, f.now)
	}
	if a.active != 0 || a.owned != 0 {
		t.Errorf("after reports: active %d, owned %d; want 0 and 0", a.active, a.owned)
	}
}

// A piece's waiting blocks that the peer cancels, or that leave with the
// peer, free its place under the cap.
func TestPolicy_CancelsAndLeavingFreeTheCap(t *testing.T) {
	f := newPolicyFixture(t, 4)
	f.p.cfg.maxActive = 1
	a, b := f.downloader(), f.downloader()
	f.expect(a, 0, serve)
	f.expect(a, 1, hold)
	f.p.dropped(a, request{index: 0, length: testPieceLen})
	f.expect(a, 1, serve)
	f.p.leave(a, f.now, false)
	if a.active != 0 {
		t.Errorf("a left with %d active pieces", a.active)
	}
	f.expect(b, 1, serve) // back in the pool
}

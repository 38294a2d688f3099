package tracker

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// remote is the source address of test peer i.
func remote(i int) string { return fmt.Sprintf("10.0.%d.%d:40000", i/250, i%250+1) }

// addrOf is where test peer i listens when it announces from remote(i)
// with port 1000+i.
func addrOf(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddrPort(remote(i)).Addr(), uint16(1000+i))
}

// join announces peer i (id byte i) with left bytes to go.
func join(t *testing.T, tr *Tracker, ih metainfo.Hash, i int, left int64) testResponse {
	t.Helper()
	r := doAnnounce(t, tr, announceReq{ih: ih, id: byte(i), port: 1000 + i, left: left, numWant: -1, remote: remote(i)})
	if r.FailureReason != "" {
		t.Fatalf("peer %d refused: %s", i, r.FailureReason)
	}
	return r
}

func TestTracker_HandsOutFinishedPeersFirst(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	seeds := map[netip.AddrPort]bool{}
	for i := 1; i <= 5; i++ {
		join(t, tr, ihA, i, 0)
		seeds[addrOf(i)] = true
	}
	for i := 10; i < 40; i++ {
		join(t, tr, ihA, i, 1000)
	}
	for _, numWant := range []int{3, 5, 10, 50} {
		r := doAnnounce(t, tr, announceReq{ih: ihA, id: 200, port: 1200, left: 1000, numWant: numWant, remote: remote(200)})
		got := compactAddrs(t, r)
		want := min(numWant, 35)
		if len(got) != want {
			t.Fatalf("numwant %d: %d peers, want %d", numWant, len(got), want)
		}
		for j, a := range got {
			if isSeed := seeds[a]; isSeed != (j < 5) {
				t.Errorf("numwant %d: entry %d (%v) seed=%v; want the 5 finished peers first, then the others", numWant, j, a, isSeed)
			}
		}
	}
}

func TestTracker_SamplesPeersUniformly(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	const peers, numWant, rounds = 40, 10, 3000
	for i := 1; i <= peers; i++ {
		join(t, tr, ihA, i, 1000)
	}
	requester := announceReq{ih: ihA, id: 1, port: 1001, left: 1000, numWant: numWant, remote: remote(1)}
	counts := map[netip.AddrPort]int{}
	for range rounds {
		r := doAnnounce(t, tr, requester)
		got := compactAddrs(t, r)
		if len(got) != numWant {
			t.Fatalf("%d peers, want %d", len(got), numWant)
		}
		seen := map[netip.AddrPort]bool{}
		for _, a := range got {
			if seen[a] {
				t.Fatalf("peer %v listed twice in one answer %v", a, got)
			}
			if a == addrOf(1) {
				t.Fatalf("requester listed to itself")
			}
			seen[a] = true
			counts[a]++
		}
	}
	// Each of the 39 others is expected rounds·numWant/39 ≈ 769 times, with
	// a standard deviation near 24: ±25% is about 8 of them.
	want := float64(rounds*numWant) / (peers - 1)
	if len(counts) != peers-1 {
		t.Errorf("%d distinct peers handed out, want %d", len(counts), peers-1)
	}
	for a, n := range counts {
		if float64(n) < 0.75*want || float64(n) > 1.25*want {
			t.Errorf("peer %v handed out %d times, want about %.0f", a, n, want)
		}
	}
}

func TestTracker_CapsNumWant(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	for i := 1; i <= MaxNumWant+20; i++ {
		join(t, tr, ihA, i, 1000)
	}
	for _, tc := range []struct{ numWant, want int }{{MaxNumWant + 1, MaxNumWant}, {1 << 30, MaxNumWant}} {
		r := doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, left: 1000, numWant: tc.numWant, remote: remote(1)})
		if n := len(compactAddrs(t, r)); n != tc.want {
			t.Errorf("numwant %d: %d peers, want %d", tc.numWant, n, tc.want)
		}
	}
}

func TestAnnounceRateFor_KeepsTheAnswersNearATwentiethOfTheCap(t *testing.T) {
	if got := AnnounceRateFor(0); got != 0 {
		t.Errorf("no cap: rate %d, want 0 (the default)", got)
	}
	for _, capBytes := range []int64{1, 10_000, 87_500, 250_000, 1_000_000} {
		r := AnnounceRateFor(capBytes)
		if r < 1 || r > DefaultAnnounceRate {
			t.Errorf("cap %d B/s: rate %d, want 1..%d", capBytes, r, DefaultAnnounceRate)
			continue
		}
		if share := float64(r*AnswerBytes) / float64(capBytes); r > 1 && share > 1.0/20 {
			t.Errorf("cap %d B/s: %d answers a second take %.1f %% of it", capBytes, r, 100*share)
		}
	}
	// 700 kbit/s, the 200-host lab's cap: 9 a second, so 200 hosts × 5
	// layers announce at the automatic interval's longest.
	if r := AnnounceRateFor(87_500); r != 9 || autoInterval(1000, 0, r) != MaxAutoInterval {
		t.Errorf("700 kbit/s: rate %d, interval at 1,000 leechers %v", r, autoInterval(1000, 0, r))
	}
	// A fast cap changes nothing.
	if r := AnnounceRateFor(125_000_000); r != DefaultAnnounceRate {
		t.Errorf("1 Gbit/s: rate %d, want the default %d", r, DefaultAnnounceRate)
	}
}

func TestAutoInterval_HoldsTheAnnounceRate(t *testing.T) {
	for _, tc := range []struct {
		leechers, seeds int64
		rate            int
		want            time.Duration
	}{
		{0, 0, 1000, time.Second},
		{100, 0, 1000, time.Second},
		{1000, 0, 1000, time.Second},
		{1001, 0, 1000, 2 * time.Second},
		{0, 4000, 1000, time.Second}, // seeds weigh a quarter
		{0, 4001, 1000, 2 * time.Second},
		{2000, 0, 1000, 2 * time.Second},
		{10_000, 0, 1000, 10 * time.Second},
		{100_000, 0, 1000, MaxAutoInterval},
		{25, 0, 10, 3 * time.Second},
	} {
		if got := autoInterval(tc.leechers, tc.seeds, tc.rate); got != tc.want {
			t.Errorf("autoInterval(%d leechers, %d seeds, %d/s) = %v, want %v", tc.leechers, tc.seeds, tc.rate, got, tc.want)
		}
	}
	// Below the cap, the steady rate L/I + S/(F·I) never exceeds the target.
	for l := int64(0); l <= 20_000; l += 997 {
		for s := int64(0); s <= 20_000; s += 1499 {
			i := autoInterval(l, s, 1000).Seconds()
			if i >= MaxAutoInterval.Seconds() {
				continue
			}
			if rate := float64(l)/i + float64(s)/(SeedIntervalFactor*i); rate > 1000 {
				t.Errorf("%d leechers, %d seeds: interval %vs gives %.0f announces/s", l, s, i, rate)
			}
		}
	}
}

func TestTracker_IntervalIsOneSecondForSmallSwarms(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	var last testResponse
	// 20 hosts × 5 layers downloading: DefaultAnnounceRate's 1 s bound.
	for i := 1; i <= 50; i++ {
		last = join(t, tr, ihA, i, 1000)
		join(t, tr, ihB, i, 1000)
	}
	if last.Interval != 1 || last.MinInterval != 1 {
		t.Errorf("100 downloading peers: interval %d, min %d; want 1 1", last.Interval, last.MinInterval)
	}
}

func TestTracker_IntervalGrowsWithThePeers(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA, ihB}, AnnounceRate: 10, Clock: clock.Now})
	var got []int64
	for i := 1; i <= 40; i++ {
		got = append(got, join(t, tr, ihA, i, 1000).Interval)
	}
	// The interval handed to the i-th peer follows the peers listed before it.
	for i, iv := range got {
		if want := int64(max(1, (i+9)/10)); iv != want {
			t.Errorf("peer %d: interval %d, want %d (%d peers listed, 10 announces/s)", i+1, iv, want, i)
		}
	}
	// Peers of other torrents count too: the rate is the whole tracker's.
	for i := 41; i <= 60; i++ {
		join(t, tr, ihB, i, 1000)
	}
	if r := join(t, tr, ihA, 1, 1000); r.Interval != 6 {
		t.Errorf("60 peers over two torrents: interval %d, want 6", r.Interval)
	}
}

func TestTracker_SeedsGetTheLongerInterval(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, AnnounceRate: 10, Clock: clock.Now})
	for i := 1; i <= 20; i++ {
		join(t, tr, ihA, i, 1000)
	}
	join(t, tr, ihA, 21, 0)
	// 20 leechers and a seed weigh 20¼ peers: 3 s at 10 announces/s.
	leecher := join(t, tr, ihA, 1, 1000)
	seed := join(t, tr, ihA, 21, 0)
	if leecher.Interval != 3 || leecher.MinInterval != 3 {
		t.Fatalf("leecher interval %d, min %d; want 3 3", leecher.Interval, leecher.MinInterval)
	}
	if seed.Interval != SeedIntervalFactor*3 || seed.MinInterval != 3 {
		t.Errorf("seed interval %d, min %d; want %d× the leechers' and their 3 as min", seed.Interval, seed.MinInterval, SeedIntervalFactor)
	}
	// A completed event without left makes a seed too.
	r := doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, left: -1, event: "completed", numWant: -1, remote: remote(2)})
	if r.FailureReason != "" || r.Interval != SeedIntervalFactor*r.MinInterval {
		t.Errorf("after completed: interval %d, min %d (%q); want the seeds' %d× interval", r.Interval, r.MinInterval, r.FailureReason, SeedIntervalFactor)
	}
	if r.Complete != 2 || r.Incomplete != 19 {
		t.Errorf("complete %d incomplete %d, want 2 19", r.Complete, r.Incomplete)
	}
}

func TestTracker_ExplicitIntervalWins(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, Interval: 3 * time.Second, AnnounceRate: 1, Clock: clock.Now})
	for i := 1; i <= 20; i++ {
		join(t, tr, ihA, i, 1000)
	}
	for _, left := range []int64{1000, 0} {
		if r := join(t, tr, ihA, 30, left); r.Interval != 3 || r.MinInterval != 3 {
			t.Errorf("left=%d: interval %d, min %d; want the configured 3 3", left, r.Interval, r.MinInterval)
		}
	}
}

func TestTracker_PeerTTLFollowsTheHandedInterval(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := newTestTracker(clock)
	join(t, tr, ihA, 1, 0)    // seed: 4 s interval, listed 12 s
	join(t, tr, ihA, 2, 1000) // leecher: 1 s interval, listed 5 s (the floor)
	listed := func() map[netip.AddrPort]bool {
		m := map[netip.AddrPort]bool{}
		for _, p := range tr.Peers(ihA) {
			m[p.Addr] = true
		}
		return m
	}
	clock.Advance(5 * time.Second)
	if got := listed(); !got[addrOf(1)] || !got[addrOf(2)] {
		t.Fatalf("at 5 s: listed %v, want both", got)
	}
	clock.Advance(time.Second)
	if got := listed(); !got[addrOf(1)] || got[addrOf(2)] {
		t.Fatalf("at 6 s: listed %v, want the seed only", got)
	}
	clock.Advance(6 * time.Second)
	if got := listed(); !got[addrOf(1)] {
		t.Fatalf("at 12 s: listed %v, want the seed still", got)
	}
	clock.Advance(time.Second)
	if got := listed(); len(got) != 0 {
		t.Fatalf("at 13 s: listed %v, want none", got)
	}
	if st := tr.Stats(); st.Seeds != 0 || st.Leechers != 0 {
		t.Errorf("stats after expiry: %+v, want no peers", st)
	}
}

func TestTracker_SweepsTorrentsNobodyAnnounces(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := newTestTracker(clock)
	for i := 1; i <= 10; i++ {
		join(t, tr, ihB, i, 1000)
	}
	clock.Advance(time.Minute)
	// Only torrent A is announced from now on; B's peers must still leave
	// the counts the interval follows.
	join(t, tr, ihA, 20, 1000)
	join(t, tr, ihA, 20, 1000)
	if st := tr.Stats(); st.Leechers != 1 {
		t.Errorf("leechers %d, want 1 (torrent B's 10 expired)", st.Leechers)
	}
}

func TestTracker_CapRefusesNewPeersButUpdatesListedOnes(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA, ihB}, MaxPeers: 3, Clock: clock.Now})
	for i := 1; i <= 3; i++ {
		join(t, tr, ihA, i, 1000)
	}
	r := doAnnounce(t, tr, announceReq{ih: ihA, id: 4, port: 1004, left: 1000, numWant: -1, remote: remote(4)})
	if r.FailureReason != reasonFull {
		t.Fatalf("4th peer: failure %q, want %q", r.FailureReason, reasonFull)
	}
	if n := len(tr.Peers(ihA)); n != 3 {
		t.Errorf("%d peers after a refusal, want 3", n)
	}
	// A listed peer still updates: it finishes.
	if r := join(t, tr, ihA, 2, 0); r.Complete != 1 || r.Incomplete != 2 {
		t.Errorf("after peer 2 finished: complete %d incomplete %d, want 1 2", r.Complete, r.Incomplete)
	}
	// The cap is per torrent.
	join(t, tr, ihB, 4, 1000)
	// A peer leaving makes room.
	doAnnounce(t, tr, announceReq{ih: ihA, id: 3, port: 1003, event: "stopped", numWant: -1, remote: remote(3)})
	join(t, tr, ihA, 4, 1000)
	// So does a peer expiring.
	if r := doAnnounce(t, tr, announceReq{ih: ihA, id: 5, port: 1005, left: 1000, numWant: -1, remote: remote(5)}); r.FailureReason != reasonFull {
		t.Fatalf("5th peer: failure %q, want %q", r.FailureReason, reasonFull)
	}
	clock.Advance(time.Minute)
	join(t, tr, ihA, 5, 1000)
	if st := tr.Stats(); st.Refused != 2 {
		t.Errorf("refused %d, want 2", st.Refused)
	}
}

func TestTracker_RefusesAddressesOutsideTheJob(t *testing.T) {
	allowed := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")}
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, AllowedIPs: allowed, Clock: NewFakeClock(time.Unix(1000, 0)).Now})
	for _, tc := range []struct {
		name, remote, ip string
		ok               bool
	}{
		{"a job host", "10.0.0.1:5000", "", true},
		{"a job host, IPv4-mapped", "[::ffff:10.0.0.2]:5000", "", true},
		{"a stranger", "10.0.0.3:5000", "", false},
		{"a stranger naming a job host", "10.0.0.3:5000", "10.0.0.1", false},
		{"a job host naming a stranger", "10.0.0.1:5000", "10.0.0.3", true}, // ip= ignored: listed as 10.0.0.1
		{"tunnelled, naming a job host", "127.0.0.1:5000", "10.0.0.2", true},
		{"tunnelled, naming a stranger", "127.0.0.1:5000", "10.0.0.3", false},
		{"tunnelled, naming nobody", "127.0.0.1:5000", "", false},
	} {
		r := doAnnounce(t, tr, announceReq{ih: ihA, id: 9, port: 6881, numWant: -1, remote: tc.remote, ip: tc.ip})
		if tc.ok && r.FailureReason != "" {
			t.Errorf("%s: refused (%s)", tc.name, r.FailureReason)
		}
		if !tc.ok && r.FailureReason != reasonNotAllowed {
			t.Errorf("%s: failure %q, want %q", tc.name, r.FailureReason, reasonNotAllowed)
		}
	}
	for _, p := range tr.Peers(ihA) {
		if p.Addr.Addr() != allowed[0] && p.Addr.Addr() != allowed[1] {
			t.Errorf("listed %v, not one of the job's hosts", p.Addr)
		}
	}
	// An empty list admits nobody.
	none := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, AllowedIPs: []netip.Addr{}})
	if r := doAnnounce(t, none, announceReq{ih: ihA, id: 1, port: 1, numWant: -1, remote: "10.0.0.1:1"}); r.FailureReason != reasonNotAllowed {
		t.Errorf("empty allow list: failure %q, want %q", r.FailureReason, reasonNotAllowed)
	}
}

func TestTracker_IgnoresIPParamUnlessFromLoopback(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: -1, ip: "10.9.9.1", remote: "10.0.0.1:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, ip: "10.9.9.2", remote: "127.0.0.1:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 3, port: 1003, numWant: -1, ip: "10.9.9.3", remote: "[::1]:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 4, port: 1004, numWant: -1, ip: "10.9.9.4", remote: "127.8.0.1:1"})
	got := map[netip.AddrPort]bool{}
	for _, p := range tr.Peers(ihA) {
		got[p.Addr] = true
	}
	for _, want := range []string{"10.0.0.1:1001", "10.9.9.2:1002", "10.9.9.3:1003", "10.9.9.4:1004"} {
		if !got[netip.MustParseAddrPort(want)] {
			t.Errorf("missing %s in %v", want, got)
		}
	}
}

func TestTracker_ConcurrentAnnouncesKeepCountsExact(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA, ihB}, MaxPeers: 100, Clock: clock.Now})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for j := range 300 {
				id := byte(g*30 + j%30 + 1)
				ih := []metainfo.Hash{ihA, ihB}[j%2]
				req := announceReq{ih: ih, id: id, port: 1000 + int(id), left: int64(j % 3), numWant: -1, remote: remote(int(id))}
				if j%7 == 0 {
					req.event = "stopped"
				}
				rec := httptest.NewRecorder()
				tr.ServeHTTP(rec, newAnnounceRequest(req))
				if rec.Code != http.StatusOK {
					t.Errorf("status %d", rec.Code)
				}
				if j%50 == 0 {
					clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
	var seeds, leechers int64
	for _, ih := range []metainfo.Hash{ihA, ihB} {
		for _, p := range tr.Peers(ih) {
			if p.Left == 0 {
				seeds++
			} else {
				leechers++
			}
		}
	}
	if st := tr.Stats(); st.Seeds != seeds || st.Leechers != leechers {
		t.Errorf("stats count %d seeds, %d leechers; the store lists %d, %d", st.Seeds, st.Leechers, seeds, leechers)
	}
}

package swarm

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
)

// testTracker is a minimal HTTP tracker (BEP 3 announce, BEP 23 compact
// peers) for in-process swarms: the job's real tracker lives on the
// operator side, which nodebin does not import. interval chooses the
// announce interval by what the peer still misses, as a tracker that slows
// finished peers down would.
type testTracker struct {
	interval func(left int64) time.Duration
	// extra is listed in every answer besides the announcing peers.
	extra []netip.AddrPort

	mu        sync.Mutex
	swarms    map[string]map[string]testPeer // infohash → peer id → peer
	announces int
	byLeft    map[bool]int // announces with left == 0 (true) and > 0
	log       []trackerAnnounce
}

// trackerAnnounce is one announce as the tracker saw it.
type trackerAnnounce struct {
	at      time.Time
	event   string
	left    int64
	port    uint16
	numWant string // as sent; "" when absent
}

type testPeer struct {
	addr netip.AddrPort
	left int64
	seen time.Time
}

func newTestTracker(interval func(left int64) time.Duration) *testTracker {
	if interval == nil {
		interval = func(int64) time.Duration { return time.Second }
	}
	return &testTracker{interval: interval, swarms: map[string]map[string]testPeer{}, byLeft: map[bool]int{}}
}

// serve listens on 127.0.0.1 and returns the announce URL; the server stops
// with the test.
func (tr *testTracker) serve(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: tr, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/announce"
}

// announcesFrom returns the announces from the peer listening on port.
func (tr *testTracker) announcesFrom(port int) []trackerAnnounce {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []trackerAnnounce
	for _, a := range tr.log {
		if int(a.port) == port {
			out = append(out, a)
		}
	}
	return out
}

// counts returns the announces received: all, with left == 0, with left > 0.
func (tr *testTracker) counts() (all, done, notDone int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.announces, tr.byLeft[true], tr.byLeft[false]
}

func (tr *testTracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ih, id := q.Get("info_hash"), q.Get("peer_id")
	port, err1 := strconv.ParseUint(q.Get("port"), 10, 16)
	left, err2 := strconv.ParseInt(q.Get("left"), 10, 64)
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := q.Get("ip"); ip != "" {
		host = ip
	}
	addr, err3 := netip.ParseAddr(host)
	if len(ih) != 20 || id == "" || err1 != nil || err2 != nil || err3 != nil {
		w.WriteHeader(http.StatusBadRequest)
		bencode.NewEncoder(w).Encode(map[string]string{"failure reason": "bad announce"})
		return
	}
	numWant := 50
	if n, err := strconv.Atoi(q.Get("numwant")); err == nil && n >= 0 {
		numWant = n
	}
	now := time.Now()
	me := testPeer{addr: netip.AddrPortFrom(addr.Unmap(), uint16(port)), left: left, seen: now}
	interval := tr.interval(left)

	tr.mu.Lock()
	tr.announces++
	tr.byLeft[left == 0]++
	tr.log = append(tr.log, trackerAnnounce{at: now, event: q.Get("event"), left: left, port: uint16(port), numWant: q.Get("numwant")})
	peers := tr.swarms[ih]
	if peers == nil {
		peers = map[string]testPeer{}
		tr.swarms[ih] = peers
	}
	if q.Get("event") == "stopped" {
		delete(peers, id)
		numWant = 0
	} else {
		peers[id] = me
	}
	var others []netip.AddrPort
	for pid, p := range peers {
		if now.Sub(p.seen) > 3*tr.interval(p.left)+5*time.Second {
			delete(peers, pid)
			continue
		}
		if pid != id && p.addr != me.addr {
			others = append(others, p.addr)
		}
	}
	others = append(others, tr.extra...)
	tr.mu.Unlock()

	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	others = others[:min(len(others), numWant)]
	compact := make([]byte, 0, 6*len(others))
	for _, a := range others {
		ip := a.Addr().As4()
		compact = append(compact, ip[:]...)
		compact = append(compact, byte(a.Port()>>8), byte(a.Port()))
	}
	bencode.NewEncoder(w).Encode(map[string]any{
		"interval": int64(max(interval/time.Second, 1)),
		"peers":    string(compact),
	})
}

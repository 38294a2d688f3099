package tracker

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

const testToken = "s3cret-token"

var (
	ihA = metainfo.Hash{0xaa}
	ihB = metainfo.Hash{0xbb}
)

type testResponse struct {
	FailureReason string           `bencode:"failure reason"`
	Interval      int64            `bencode:"interval"`
	MinInterval   int64            `bencode:"min interval"`
	Complete      int              `bencode:"complete"`
	Incomplete    int              `bencode:"incomplete"`
	Peers         bencode.Bytes    `bencode:"peers"`
	Peers6        string           `bencode:"peers6"`
	raw           map[string]any   `bencode:"-"`
	list          []map[string]any `bencode:"-"`
}

type announceReq struct {
	token   string
	ih      metainfo.Hash
	id      byte // peer id is 20 times this byte
	port    int
	left    int64 // -1: leave out
	event   string
	numWant int // -1: leave out
	compact string
	ip      string
	remote  string // RemoteAddr; default 192.0.2.1:40000
}

// newAnnounceRequest builds the request of a.
func newAnnounceRequest(a announceReq) *http.Request {
	q := url.Values{}
	q.Set("info_hash", string(a.ih[:]))
	id := make([]byte, 20)
	for i := range id {
		id[i] = a.id
	}
	q.Set("peer_id", string(id))
	q.Set("port", strconv.Itoa(a.port))
	if a.left >= 0 {
		q.Set("left", strconv.FormatInt(a.left, 10))
	}
	if a.event != "" {
		q.Set("event", a.event)
	}
	if a.numWant >= 0 {
		q.Set("numwant", strconv.Itoa(a.numWant))
	}
	if a.compact != "" {
		q.Set("compact", a.compact)
	}
	if a.ip != "" {
		q.Set("ip", a.ip)
	}
	token := a.token
	if token == "" {
		token = testToken
	}
	req := httptest.NewRequest("GET", AnnouncePath+token+"?"+q.Encode(), nil)
	req.RemoteAddr = a.remote
	if req.RemoteAddr == "" {
		req.RemoteAddr = "192.0.2.1:40000"
	}
	return req
}

func doAnnounce(t *testing.T, tr *Tracker, a announceReq) testResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	tr.ServeHTTP(rec, newAnnounceRequest(a))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	var resp testResponse
	if err := bencode.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	if err := bencode.Unmarshal(rec.Body.Bytes(), &resp.raw); err != nil {
		t.Fatal(err)
	}
	if a.compact == "0" && resp.FailureReason == "" {
		if err := bencode.Unmarshal(resp.Peers, &resp.list); err != nil {
			t.Fatalf("non-compact peers %q: %v", resp.Peers, err)
		}
	}
	return resp
}

func compactAddrs(t *testing.T, r testResponse) []netip.AddrPort {
	t.Helper()
	var s string
	if err := bencode.Unmarshal(r.Peers, &s); err != nil {
		t.Fatalf("compact peers are not a string: %q", r.Peers)
	}
	if len(s)%6 != 0 {
		t.Fatalf("compact peers length %d", len(s))
	}
	var out []netip.AddrPort
	for i := 0; i < len(s); i += 6 {
		ip := netip.AddrFrom4([4]byte{s[i], s[i+1], s[i+2], s[i+3]})
		out = append(out, netip.AddrPortFrom(ip, uint16(s[i+4])<<8|uint16(s[i+5])))
	}
	return out
}

func newTestTracker(clock *FakeClock) *Tracker {
	return New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA, ihB}, Clock: clock.Now})
}

func TestTracker_RefusesAnnounceWithoutJobToken(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	for _, token := range []string{"wrong", testToken + "x", "s3cret"} {
		r := doAnnounce(t, tr, announceReq{token: token, ih: ihA, id: 1, port: 1000, numWant: -1})
		if r.FailureReason != reasonBadToken {
			t.Errorf("token %q: failure reason %q, want %q", token, r.FailureReason, reasonBadToken)
		}
	}
	if n := len(tr.Peers(ihA)); n != 0 {
		t.Errorf("refused announces left %d peers", n)
	}
}

func TestTracker_RefusesTorrentsOutsideTheJob(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	r := doAnnounce(t, tr, announceReq{ih: metainfo.Hash{0xcc}, id: 1, port: 1000, numWant: -1})
	if r.FailureReason != reasonBadInfoHash {
		t.Errorf("failure reason %q, want %q", r.FailureReason, reasonBadInfoHash)
	}
	if _, ok := r.raw["peers"]; ok {
		t.Error("failure response lists peers")
	}
}

func TestTracker_ReturnsCompactPeersWithoutTheRequester(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, left: 0, numWant: -1, remote: "10.0.0.1:5555"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, left: 10, numWant: -1, remote: "10.0.0.2:5555"})
	doAnnounce(t, tr, announceReq{ih: ihB, id: 4, port: 1004, left: 10, numWant: -1, remote: "10.0.0.4:5555"})
	r := doAnnounce(t, tr, announceReq{ih: ihA, id: 3, port: 1003, left: 10, numWant: -1, remote: "10.0.0.3:5555"})
	if r.FailureReason != "" {
		t.Fatal(r.FailureReason)
	}
	if r.Interval != 1 || r.MinInterval != 1 {
		t.Errorf("interval %d min %d, want 1 1", r.Interval, r.MinInterval)
	}
	if r.Complete != 1 || r.Incomplete != 2 {
		t.Errorf("complete %d incomplete %d, want 1 2", r.Complete, r.Incomplete)
	}
	got := map[netip.AddrPort]bool{}
	for _, a := range compactAddrs(t, r) {
		got[a] = true
	}
	want := map[netip.AddrPort]bool{
		netip.MustParseAddrPort("10.0.0.1:1001"): true,
		netip.MustParseAddrPort("10.0.0.2:1002"): true,
	}
	if len(got) != len(want) {
		t.Fatalf("peers %v, want %v", got, want)
	}
	for a := range want {
		if !got[a] {
			t.Errorf("missing peer %v in %v", a, got)
		}
	}
}

func TestTracker_ListsPeerDictsWhenNotCompact(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	doAnnounce(t, tr, announceReq{ih: ihA, id: 7, port: 6881, numWant: -1, remote: "10.0.0.7:1"})
	r := doAnnounce(t, tr, announceReq{ih: ihA, id: 8, port: 6882, numWant: -1, compact: "0", remote: "10.0.0.8:1"})
	if len(r.list) != 1 {
		t.Fatalf("peers %v, want one dict", r.list)
	}
	p := r.list[0]
	if p["ip"] != "10.0.0.7" || p["port"] != int64(6881) || p["peer id"] != string(make20(7)) {
		t.Errorf("peer dict %v", p)
	}
}

func make20(b byte) []byte {
	id := make([]byte, 20)
	for i := range id {
		id[i] = b
	}
	return id
}

func TestTracker_ExpiresSilentPeers(t *testing.T) {
	clock := NewFakeClock(time.Unix(1000, 0))
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, Interval: 2 * time.Second, Clock: clock.Now})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: -1, remote: "10.0.0.1:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, remote: "10.0.0.2:1"})
	// Peer 2 keeps announcing every interval, peer 1 goes silent.
	for range 3 {
		clock.Advance(2 * time.Second)
		doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, remote: "10.0.0.2:1"})
	}
	if n := len(tr.Peers(ihA)); n != 2 {
		t.Fatalf("after 6s (TTL 3×2s) %d peers, want 2", n)
	}
	clock.Advance(2 * time.Second)
	r := doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, remote: "10.0.0.2:1"})
	if addrs := compactAddrs(t, r); len(addrs) != 0 {
		t.Errorf("silent peer still listed after 8s: %v", addrs)
	}
	peers := tr.Peers(ihA)
	if len(peers) != 1 || peers[0].ID != [20]byte(make20(2)) {
		t.Errorf("peers %v, want only peer 2", peers)
	}
}

func TestTracker_StoppedRemovesPeer(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: -1, remote: "10.0.0.1:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, remote: "10.0.0.2:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: -1, event: "stopped", remote: "10.0.0.1:1"})
	peers := tr.Peers(ihA)
	if len(peers) != 1 || peers[0].Addr != netip.MustParseAddrPort("10.0.0.2:1002") {
		t.Errorf("peers %v, want only 10.0.0.2:1002", peers)
	}
	if st := tr.Stats(); st.Seeds != 1 || st.Leechers != 0 {
		t.Errorf("stats %+v, want the one seed left", st)
	}
}

func TestTracker_UsesIPParamForTunnelledPeers(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: -1, ip: "10.9.9.9", remote: "127.0.0.1:33333"})
	// An unusable ip= falls back to the source address.
	doAnnounce(t, tr, announceReq{ih: ihA, id: 2, port: 1002, numWant: -1, ip: "0.0.0.0", remote: "10.0.0.2:1"})
	doAnnounce(t, tr, announceReq{ih: ihA, id: 3, port: 1003, numWant: -1, ip: "not-an-ip", remote: "10.0.0.3:1"})
	got := map[netip.AddrPort]bool{}
	for _, p := range tr.Peers(ihA) {
		got[p.Addr] = true
	}
	for _, want := range []string{"10.9.9.9:1001", "10.0.0.2:1002", "10.0.0.3:1003"} {
		if !got[netip.MustParseAddrPort(want)] {
			t.Errorf("missing %s in %v", want, got)
		}
	}
}

func TestTracker_RespectsNumWant(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	for i := 1; i <= 30; i++ {
		doAnnounce(t, tr, announceReq{ih: ihA, id: byte(i), port: 1000 + i, numWant: -1, remote: "10.0.1." + strconv.Itoa(i) + ":1"})
	}
	for _, tc := range []struct{ numWant, want int }{{5, 5}, {0, 0}, {-1, 29}, {1000, 29}} {
		r := doAnnounce(t, tr, announceReq{ih: ihA, id: 1, port: 1001, numWant: tc.numWant, remote: "10.0.1.1:1"})
		if n := len(compactAddrs(t, r)); n != tc.want {
			t.Errorf("numwant %d: %d peers, want %d", tc.numWant, n, tc.want)
		}
	}
}

func TestTracker_AnnounceURLCarriesToken(t *testing.T) {
	tr := newTestTracker(NewFakeClock(time.Unix(1000, 0)))
	if got, want := tr.AnnounceURL("http://10.0.0.1:6969/"), "http://10.0.0.1:6969/announce/"+testToken; got != want {
		t.Errorf("AnnounceURL = %q, want %q", got, want)
	}
}

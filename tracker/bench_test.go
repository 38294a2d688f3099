package tracker

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// benchSizes are the swarm sizes of the announce benchmarks.
var benchSizes = []int{100, 1_000, 10_000}

// benchPeer is the i-th peer of a benchmark swarm: a distinct peer ID and
// address, one in ten finished.
func benchPeer(i int) (id [20]byte, addr netip.AddrPort, left int64) {
	binary.BigEndian.PutUint32(id[:], uint32(i))
	copy(id[4:], "-benchpeer-")
	n := uint32(i + 1)
	ip := netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	left = 1 << 20
	if i%10 == 0 {
		left = 0
	}
	return id, netip.AddrPortFrom(ip, 6881), left
}

// benchRequest is the announce a stock anacrolix node sends between events
// (its query keys, ipv4= and ip= naming its own address).
func benchRequest(ih metainfo.Hash, i int) *http.Request {
	id, addr, left := benchPeer(i)
	q := url.Values{}
	q.Set("key", strconv.Itoa(i))
	q.Set("info_hash", string(ih[:]))
	q.Set("peer_id", string(id[:]))
	q.Set("port", strconv.Itoa(int(addr.Port())))
	q.Set("uploaded", "0")
	q.Set("downloaded", "0")
	q.Set("left", strconv.FormatInt(left, 10))
	q.Set("compact", "1")
	q.Set("supportcrypto", "1")
	q.Set("ipv4", addr.Addr().String())
	q.Add("ip", addr.Addr().String())
	r := httptest.NewRequest("GET", AnnouncePath+testToken+"?"+q.Encode(), nil)
	r.RemoteAddr = netip.AddrPortFrom(addr.Addr(), 40000).String()
	return r
}

// newBenchTracker returns a tracker whose one torrent holds n peers, on a
// clock that moves 1 µs per reading: every announce moves its peer's
// expiry, as real time does, while n announces take far less than a TTL so
// that none of the peers expires mid-benchmark.
func newBenchTracker(b *testing.B, n int) *Tracker {
	b.Helper()
	clock := NewFakeClock(time.Unix(1000, 0))
	tick := func() time.Time {
		clock.Advance(time.Microsecond)
		return clock.Now()
	}
	tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, Clock: tick})
	for i := range n {
		rec := httptest.NewRecorder()
		tr.ServeHTTP(rec, benchRequest(ihA, i))
	}
	if got := len(tr.Peers(ihA)); got != n {
		b.Fatalf("swarm holds %d peers, want %d", got, n)
	}
	return tr
}

// BenchmarkAnnounce measures one announce end to end through ServeHTTP
// (query parsing, the swarm update, sampling 50 peers, bencoding) from the
// swarm's own peers in turn.
//
//	go test -run '^$' -bench Announce -cpu 1 -count 5 ./tracker/
func BenchmarkAnnounce(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			tr := newBenchTracker(b, n)
			reqs := make([]*http.Request, n)
			for i := range reqs {
				reqs[i] = benchRequest(ihA, i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rec := httptest.NewRecorder()
				tr.ServeHTTP(rec, reqs[i])
				if i++; i == n {
					i = 0
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
		})
	}
}

// BenchmarkAnnounceHandle measures the swarm update and peer sampling alone,
// without HTTP parsing or encoding.
func BenchmarkAnnounceHandle(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			tr := newBenchTracker(b, n)
			as := make([]announce, n)
			for i := range as {
				id, addr, left := benchPeer(i)
				as[i] = announce{infoHash: ihA, peerID: id, addr: addr, left: left, numWant: DefaultNumWant, compact: true}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, reason := tr.handle(as[i]); reason != "" {
					b.Fatal(reason)
				}
				if i++; i == n {
					i = 0
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
		})
	}
}

// BenchmarkAnnounceOverTCP measures announces as anacrolix sends them: one
// new loopback TCP connection per announce (its tracker client disables
// keep-alive), served by Serve. Client and server share the one core, so
// this is an upper bound on the bastion's cost per announce; it grounds
// DefaultAnnounceRate.
func BenchmarkAnnounceOverTCP(b *testing.B) {
	const n = 1_000
	tr := newBenchTracker(b, n)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, tr, ServeConfig{}) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			b.Error(err)
		}
	}()
	base := "http://" + ln.Addr().String()
	urls := make([]string, n)
	for i := range urls {
		urls[i] = base + benchRequest(ihA, i).URL.String()
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := client.Get(urls[i])
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i++; i == n {
			i = 0
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "announces/s")
}

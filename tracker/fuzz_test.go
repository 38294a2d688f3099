package tracker

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// FuzzAnnounce feeds arbitrary paths, queries and source addresses to the
// handler. Whatever comes in, the answer is a bencoded dictionary that is
// either a lone failure reason or a peer list of whole entries no longer than
// numwant, a torrent outside the job never gains peers, and only an
// announce from loopback is listed at an address other than its source.
//
//	go test ./tracker -run '^$' -fuzz FuzzAnnounce -fuzztime 1m
func FuzzAnnounce(f *testing.F) {
	ih := string(ihA[:])
	id := string(make20(1))
	f.Add("/announce/"+testToken, "info_hash="+url.QueryEscape(ih)+"&peer_id="+url.QueryEscape(id)+"&port=6881&left=0&compact=1", "10.0.0.1:1234")
	f.Add("/announce/"+testToken, "info_hash="+url.QueryEscape(ih)+"&peer_id="+url.QueryEscape(id)+"&port=6881&left=5&compact=0&numwant=3&event=started", "10.0.0.1:1234")
	f.Add("/announce/"+testToken, "info_hash="+url.QueryEscape(ih)+"&peer_id="+url.QueryEscape(id)+"&port=1&ip=127.0.0.1&ipv4=10.1.1.1&event=stopped", "[::1]:1")
	f.Add("/announce/"+testToken, "info_hash="+url.QueryEscape(ih)+"&peer_id="+url.QueryEscape(id)+"&port=7&ip=10.7.7.7", "10.0.0.1:1")
	f.Add("/announce/wrong", "info_hash=x", "10.0.0.1:1")
	f.Add("/announce/"+testToken, "info_hash=%zz;&&", "bad")
	f.Add("/", "", "")

	f.Fuzz(func(t *testing.T, path, rawQuery, remote string) {
		clock := NewFakeClock(time.Unix(1000, 0))
		tr := New(Config{Token: testToken, InfoHashes: []metainfo.Hash{ihA}, Clock: clock.Now})
		// A second peer, so that answers can list someone.
		seedReq := httptest.NewRequest("GET", "/announce/"+testToken+"?info_hash="+url.QueryEscape(ih)+
			"&peer_id="+url.QueryEscape(string(make20(9)))+"&port=9&left=0", nil)
		seedReq.RemoteAddr = "10.0.0.9:9"
		tr.ServeHTTP(httptest.NewRecorder(), seedReq)

		req := httptest.NewRequest("GET", "/", nil)
		req.URL = &url.URL{Path: path, RawQuery: rawQuery}
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		tr.ServeHTTP(rec, req)

		var d map[string]any
		if err := bencode.Unmarshal(rec.Body.Bytes(), &d); err != nil {
			t.Fatalf("answer %q is not bencode: %v", rec.Body.Bytes(), err)
		}
		if reason, ok := d["failure reason"]; ok {
			if len(d) != 1 {
				t.Fatalf("failure %q comes with other keys: %v", reason, d)
			}
		} else {
			if iv, _ := d["interval"].(int64); iv < 1 {
				t.Fatalf("interval %v", d["interval"])
			}
			q, _ := url.ParseQuery(rawQuery)
			numWant := DefaultNumWant
			if n, err := strconv.Atoi(q.Get("numwant")); err == nil {
				numWant = min(max(n, 0), MaxNumWant)
			}
			switch peers := d["peers"].(type) {
			case string:
				if len(peers)%6 != 0 || len(peers)/6 > numWant {
					t.Fatalf("compact peers of %d bytes for numwant %d", len(peers), numWant)
				}
			case []any:
				if len(peers) > numWant {
					t.Fatalf("%d peers for numwant %d", len(peers), numWant)
				}
			default:
				t.Fatalf("peers %T", d["peers"])
			}
		}
		src, srcErr := netip.ParseAddrPort(remote)
		for _, p := range tr.Peers(ihA) {
			if !p.Addr.IsValid() || p.Addr.Port() == 0 || p.Addr.Addr().IsUnspecified() {
				t.Fatalf("listed an undialable peer %v", p.Addr)
			}
			// Only a loopback source may name another address (ip=).
			if p.ID != [20]byte(make20(9)) && srcErr == nil && !src.Addr().Unmap().IsLoopback() && p.Addr.Addr() != src.Addr().Unmap().WithZone("") {
				t.Fatalf("announce from %v listed at %v", remote, p.Addr)
			}
		}
		if n := len(tr.Peers(metainfo.Hash{})); n != 0 {
			t.Fatalf("torrent outside the job has %d peers", n)
		}
	})
}

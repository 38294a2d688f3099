// Package tracker is the BitTorrent tracker of one layercast job: an HTTP
// announce endpoint (BEP 3) that hands out compact peer lists (BEP 23, and
// BEP 7 "peers6" for IPv6), answers only for the job's torrents, and only to
// announces whose URL path carries the job's token.
//
// The token sits in the path (http://host:port/announce/<token>) because
// every BitTorrent client keeps the announce URL's path and appends its own
// query, while some rewrite or reorder query parameters.
package tracker

import (
	"crypto/subtle"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// AnnouncePath is the path prefix of the announce endpoint; the token follows it.
const AnnouncePath = "/announce/"

const (
	// DefaultInterval is the announce interval of the DID design: 1 s instead
	// of the usual 30 min, so that peers find each other within a second.
	DefaultInterval = time.Second
	// DefaultNumWant is how many peers an announce gets when it does not ask.
	DefaultNumWant = 50
	// MaxNumWant caps numwant.
	MaxNumWant = 200
	// minPeerTTL is the floor of the default peer TTL.
	minPeerTTL = 5 * time.Second
)

// Config is the job-scoped setup of a Tracker.
type Config struct {
	// Token must appear as the last path element of every announce.
	Token string
	// InfoHashes are the job's torrents; announces for others are refused.
	InfoHashes []metainfo.Hash
	// Interval is the announce interval sent to clients; zero means DefaultInterval.
	Interval time.Duration
	// MinInterval is sent as "min interval"; zero means Interval.
	MinInterval time.Duration
	// PeerTTL is how long a peer stays listed after its last announce. Zero
	// means 3×Interval, at least 5 s: a peer must miss two announces in a row
	// to drop out. At a 1 s interval one announce is easily late by a second
	// (anacrolix queues announces for all of a node's torrents through one
	// dispatcher; a busy tracker answers hundreds per second), and a dead peer
	// listed a few seconds too long costs a failed dial, while a live peer
	// dropped costs a source.
	PeerTTL time.Duration
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Peer is one peer of one torrent as the tracker knows it.
type Peer struct {
	ID       [20]byte
	Addr     netip.AddrPort
	Left     int64 // bytes the peer still needs; 0 is a seeder
	LastSeen time.Time
}

// Tracker is an http.Handler serving announces for one job.
type Tracker struct {
	token       string
	interval    time.Duration
	minInterval time.Duration
	ttl         time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu    sync.Mutex
	swarm map[metainfo.Hash]map[[20]byte]*Peer
}

// New returns a tracker for the given job. An empty token refuses every
// announce.
func New(cfg Config) *Tracker {
	t := &Tracker{
		token:       cfg.Token,
		interval:    cfg.Interval,
		minInterval: cfg.MinInterval,
		ttl:         cfg.PeerTTL,
		now:         cfg.Clock,
		log:         cfg.Logger,
		swarm:       make(map[metainfo.Hash]map[[20]byte]*Peer, len(cfg.InfoHashes)),
	}
	if t.interval <= 0 {
		t.interval = DefaultInterval
	}
	if t.minInterval <= 0 {
		t.minInterval = t.interval
	}
	if t.ttl <= 0 {
		t.ttl = max(3*t.interval, minPeerTTL)
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	for _, ih := range cfg.InfoHashes {
		t.swarm[ih] = make(map[[20]byte]*Peer)
	}
	return t
}

// AnnounceURL is the announce URL for clients of this job, for a tracker
// reachable at base (e.g. "http://10.0.0.1:6969").
func (t *Tracker) AnnounceURL(base string) string {
	return strings.TrimSuffix(base, "/") + AnnouncePath + url.PathEscape(t.token)
}

// Peers returns the live peers of a torrent, in no particular order.
func (t *Tracker) Peers(ih metainfo.Hash) []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	peers, ok := t.swarm[ih]
	if !ok {
		return nil
	}
	t.expire(peers, t.now())
	out := make([]Peer, 0, len(peers))
	for _, p := range peers {
		out = append(out, *p)
	}
	return out
}

// expire removes peers not seen within the TTL. t.mu is held.
func (t *Tracker) expire(peers map[[20]byte]*Peer, now time.Time) {
	for id, p := range peers {
		if now.Sub(p.LastSeen) > t.ttl {
			delete(peers, id)
		}
	}
}

// Failure reasons; clients show them to their users.
const (
	reasonBadToken    = "unknown job token"
	reasonBadInfoHash = "torrent not part of this job"
	reasonBadRequest  = "malformed announce"
)

type failure struct {
	Reason string `bencode:"failure reason"`
}

type response struct {
	Interval    int64  `bencode:"interval"`
	MinInterval int64  `bencode:"min interval"`
	Complete    int    `bencode:"complete"`
	Incomplete  int    `bencode:"incomplete"`
	Peers       any    `bencode:"peers"`
	Peers6      string `bencode:"peers6,omitempty"`
}

type dictPeer struct {
	ID   string `bencode:"peer id"`
	IP   string `bencode:"ip"`
	Port int    `bencode:"port"`
}

// announce is a parsed, valid announce request.
type announce struct {
	infoHash metainfo.Hash
	peerID   [20]byte
	addr     netip.AddrPort
	left     int64
	event    string
	numWant  int
	compact  bool
}

// ServeHTTP answers an announce. Every answer is a bencoded dictionary with
// status 200, failures included, as BEP 3 clients expect.
func (t *Tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if !t.tokenOK(r.URL.Path) {
		t.log.Debug("announce refused", "reason", reasonBadToken, "remote", r.RemoteAddr)
		writeBencode(w, failure{reasonBadToken})
		return
	}
	a, reason := parseAnnounce(r)
	if reason != "" {
		t.log.Debug("announce refused", "reason", reason, "remote", r.RemoteAddr)
		writeBencode(w, failure{reason})
		return
	}
	resp, ok := t.handle(a)
	if !ok {
		t.log.Debug("announce refused", "reason", reasonBadInfoHash, "remote", r.RemoteAddr, "info_hash", a.infoHash.HexString())
		writeBencode(w, failure{reasonBadInfoHash})
		return
	}
	writeBencode(w, resp)
}

func (t *Tracker) tokenOK(path string) bool {
	rest, ok := strings.CutPrefix(path, AnnouncePath)
	if !ok || t.token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(rest), []byte(t.token)) == 1
}

func writeBencode(w http.ResponseWriter, v any) {
	b, err := bencode.Marshal(v)
	if err != nil {
		// Our own response types always marshal; this is a programming error.
		http.Error(w, "encode tracker response", http.StatusInternalServerError)
		return
	}
	w.Write(b)
}

// parseAnnounce reads the query of an announce. The peer's address is the
// ip= (or ipv4=) parameter when it is a literal IP, else the connection's
// source: nodes that reach the tracker through an SSH tunnel announce from
// 127.0.0.1 and name their real address this way.
func parseAnnounce(r *http.Request) (announce, string) {
	var a announce
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return a, reasonBadRequest
	}
	ih := q.Get("info_hash")
	id := q.Get("peer_id")
	if len(ih) != 20 || len(id) != 20 {
		return a, reasonBadRequest
	}
	copy(a.infoHash[:], ih)
	copy(a.peerID[:], id)
	port, err := strconv.ParseUint(q.Get("port"), 10, 16)
	if err != nil || port == 0 {
		return a, reasonBadRequest
	}
	a.left = -1
	if s := q.Get("left"); s != "" {
		if a.left, err = strconv.ParseInt(s, 10, 64); err != nil || a.left < 0 {
			return a, reasonBadRequest
		}
	}
	a.event = q.Get("event")
	switch a.event {
	case "", "started", "completed", "stopped", "empty", "paused":
	default:
		return a, reasonBadRequest
	}
	a.numWant = DefaultNumWant
	if s := q.Get("numwant"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return a, reasonBadRequest
		}
		a.numWant = min(max(n, 0), MaxNumWant)
	}
	a.compact = q.Get("compact") != "0"

	var ip netip.Addr
	for _, key := range []string{"ipv4", "ip"} {
		if v, err := netip.ParseAddr(q.Get(key)); err == nil && usable(v) {
			ip = v.Unmap()
			break
		}
	}
	if !ip.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			return a, reasonBadRequest
		}
		v, err := netip.ParseAddr(host)
		if err != nil {
			return a, reasonBadRequest
		}
		ip = v.Unmap().WithZone("")
	}
	if !usable(ip) {
		return a, reasonBadRequest
	}
	a.addr = netip.AddrPortFrom(ip, uint16(port))
	return a, ""
}

// usable reports whether peers could dial ip.
func usable(ip netip.Addr) bool {
	return ip.Zone() == "" && !ip.IsUnspecified() && !ip.IsMulticast()
}

// handle records the announce and builds the answer; false means the
// torrent is not one of the job's.
func (t *Tracker) handle(a announce) (response, bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	peers, ok := t.swarm[a.infoHash]
	if !ok {
		return response{}, false
	}
	t.expire(peers, now)
	if a.event == "stopped" {
		delete(peers, a.peerID)
		a.numWant = 0
	} else {
		p := peers[a.peerID]
		if p == nil {
			p = &Peer{ID: a.peerID}
			peers[a.peerID] = p
		}
		p.Addr, p.LastSeen = a.addr, now
		if a.left >= 0 {
			p.Left = a.left
		} else if a.event == "completed" {
			p.Left = 0
		}
	}
	resp := response{
		Interval:    int64(max(t.interval.Round(time.Second), time.Second) / time.Second),
		MinInterval: int64(max(t.minInterval.Round(time.Second), time.Second) / time.Second),
	}
	others := make([]*Peer, 0, len(peers))
	for _, p := range peers {
		if p.Left == 0 {
			resp.Complete++
		} else {
			resp.Incomplete++
		}
		if p.ID == a.peerID || p.Addr == a.addr {
			continue
		}
		others = append(others, p)
	}
	if len(others) > a.numWant {
		rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
		others = others[:a.numWant]
	}
	if a.compact {
		v4, v6 := compactPeers(others)
		resp.Peers = string(v4)
		resp.Peers6 = string(v6)
	} else {
		list := make([]dictPeer, 0, len(others))
		for _, p := range others {
			list = append(list, dictPeer{ID: string(p.ID[:]), IP: p.Addr.Addr().String(), Port: int(p.Addr.Port())})
		}
		resp.Peers = list
	}
	return resp, true
}

// compactPeers encodes peers as BEP 23 (IPv4: 4-byte address, 2-byte port,
// big endian) and BEP 7 (IPv6: 16 + 2 bytes) strings.
func compactPeers(peers []*Peer) (v4, v6 []byte) {
	for _, p := range peers {
		ip, port := p.Addr.Addr(), p.Addr.Port()
		if ip.Is4() {
			b := ip.As4()
			v4 = append(v4, b[:]...)
			v4 = append(v4, byte(port>>8), byte(port))
		} else {
			b := ip.As16()
			v6 = append(v6, b[:]...)
			v6 = append(v6, byte(port>>8), byte(port))
		}
	}
	return v4, v6
}

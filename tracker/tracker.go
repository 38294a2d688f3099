// Package tracker is the BitTorrent tracker of one layercast job: an HTTP
// announce endpoint (BEP 3) that hands out compact peer lists (BEP 23, and
// BEP 7 "peers6" for IPv6), answers only for the job's torrents, and only to
// announces whose URL path carries the job's token.
//
// The token sits in the path (http://host:port/announce/<token>) because
// every BitTorrent client keeps the announce URL's path and appends its own
// query, while some rewrite or reorder query parameters.
//
// An announce costs O(numwant), not O(peers): each torrent's peers sit in a
// store with O(log n) insert, update and delete and O(k) random sampling
// (see swarm), expired peers leave it through a time-ordered heap, and
// torrents are locked one by one. The interval adapts to the number of
// peers (see DefaultAnnounceRate), peers per torrent are capped, and only
// the job's hosts may be listed.
package tracker

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// AnnouncePath is the path prefix of the announce endpoint; the token follows it.
const AnnouncePath = "/announce/"

const (
	// DefaultInterval is the announce interval of the DID design: 1 s instead
	// of the usual 30 min, so that peers find each other within a second.
	// It is the automatic interval's floor (see DefaultAnnounceRate).
	DefaultInterval = time.Second
	// DefaultNumWant is how many peers an announce gets when it does not ask.
	DefaultNumWant = 50
	// MaxNumWant caps numwant.
	MaxNumWant = 200
	// DefaultMaxPeers caps the peers of one torrent when Config.MaxPeers is
	// zero: a bound on memory (a peer costs about 200 bytes), far above
	// what one bastion serves. Set MaxPeers to the job's size instead.
	DefaultMaxPeers = 50_000
	// minPeerTTL is the floor of the default peer TTL.
	minPeerTTL = 5 * time.Second
)

// Config is the job-scoped setup of a Tracker.
type Config struct {
	// Token must appear as the last path element of every announce.
	Token string
	// InfoHashes are the job's torrents; announces for others are refused.
	InfoHashes []metainfo.Hash
	// Interval is the announce interval sent to every peer, seeds
	// included. Zero means automatic: 1 s for small jobs, longer as the
	// peers grow in number, and SeedIntervalFactor times longer for peers
	// that finished (see DefaultAnnounceRate).
	Interval time.Duration
	// AnnounceRate is the automatic interval's target, in announces per
	// second over the whole tracker; zero means DefaultAnnounceRate.
	// Ignored when Interval is set.
	AnnounceRate int
	// MinInterval is sent as "min interval"; zero means the interval of
	// downloading peers.
	MinInterval time.Duration
	// PeerTTL is how long a peer stays listed after its last announce. Zero
	// means 3× the interval handed to that peer, at least 5 s: a peer must
	// miss two announces in a row to drop out. At a 1 s interval one
	// announce is easily late by a second (anacrolix queues announces for
	// all of a node's torrents through one dispatcher; a busy tracker
	// answers hundreds per second), and a dead peer listed a few seconds too
	// long costs a failed dial, while a live peer dropped costs a source.
	PeerTTL time.Duration
	// MaxPeers caps the peers listed per torrent; zero means
	// DefaultMaxPeers. A new peer beyond it is refused (its client retries
	// later; anacrolix after a minute), a listed one still updates. Set it
	// a little above the job's host count: a node that restarts announces
	// under a new peer ID while its old entry waits out its TTL.
	MaxPeers int
	// AllowedIPs are the only addresses a peer may have (the job's hosts).
	// An announce whose peer address is not one of them is refused. Nil
	// admits every address; an empty, non-nil list admits none.
	AllowedIPs []netip.Addr
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// Peer is one peer of one torrent as the tracker knows it.
type Peer struct {
	ID       [20]byte
	Addr     netip.AddrPort
	Left     int64 // bytes the peer still needs; 0 is a seeder, -1 unknown
	LastSeen time.Time
}

// Stats counts a tracker's peers and announces.
type Stats struct {
	Seeds, Leechers int64 // listed now, over all torrents
	Announces       int64 // answered with a peer list
	Refused         int64 // answered with a failure reason
}

// Tracker is an http.Handler serving announces for one job. It is safe for
// concurrent use; announces for different torrents do not contend.
type Tracker struct {
	token       string
	interval    time.Duration // fixed; zero: automatic
	rate        int
	minInterval time.Duration
	ttl         time.Duration // fixed; zero: 3× the handed interval
	maxPeers    int
	allowed     map[netip.Addr]struct{} // nil: any
	now         func() time.Time
	log         *slog.Logger

	swarms map[metainfo.Hash]*swarm // read-only after New
	order  []*swarm                 // swarms in a fixed order, for the sweep

	sweepNext           atomic.Uint64
	seeds, leechers     atomic.Int64
	announces, refusals atomic.Int64
}

// New returns a tracker for the given job. An empty token refuses every
// announce.
func New(cfg Config) *Tracker {
	t := &Tracker{
		token:       cfg.Token,
		rate:        cfg.AnnounceRate,
		minInterval: cfg.MinInterval,
		ttl:         cfg.PeerTTL,
		maxPeers:    cfg.MaxPeers,
		now:         cfg.Clock,
		log:         cfg.Logger,
		swarms:      make(map[metainfo.Hash]*swarm, len(cfg.InfoHashes)),
	}
	if cfg.Interval > 0 {
		t.interval = wholeSeconds(cfg.Interval)
	}
	if t.rate <= 0 {
		t.rate = DefaultAnnounceRate
	}
	if t.minInterval > 0 {
		t.minInterval = wholeSeconds(t.minInterval)
	}
	if t.maxPeers <= 0 {
		t.maxPeers = DefaultMaxPeers
	}
	if cfg.AllowedIPs != nil {
		t.allowed = make(map[netip.Addr]struct{}, len(cfg.AllowedIPs))
		for _, ip := range cfg.AllowedIPs {
			t.allowed[ip.Unmap().WithZone("")] = struct{}{}
		}
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	for _, ih := range cfg.InfoHashes {
		if _, ok := t.swarms[ih]; !ok {
			s := newSwarm()
			t.swarms[ih] = s
			t.order = append(t.order, s)
		}
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
	s, ok := t.swarms[ih]
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.expire(s, t.now())
	out := make([]Peer, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e.Peer)
	}
	return out
}

// Stats returns the tracker's counts so far.
func (t *Tracker) Stats() Stats {
	return Stats{
		Seeds:     t.seeds.Load(),
		Leechers:  t.leechers.Load(),
		Announces: t.announces.Load(),
		Refused:   t.refusals.Load(),
	}
}

// expire drops the expired peers of s and keeps the counts. s.mu is held.
func (t *Tracker) expire(s *swarm, now time.Time) {
	seeds, leechers := s.expire(now)
	t.seeds.Add(-int64(seeds))
	t.leechers.Add(-int64(leechers))
}

// sweep expires one torrent in turn, so that torrents nobody announces any
// more do not keep stale peers in the counts the interval follows. It skips
// a torrent that is busy; the next announce there expires it anyway.
func (t *Tracker) sweep(now time.Time) {
	if len(t.order) < 2 {
		return
	}
	s := t.order[t.sweepNext.Add(1)%uint64(len(t.order))]
	if s.mu.TryLock() {
		t.expire(s, now)
		s.mu.Unlock()
	}
}

// intervals returns the interval for downloading peers and for seeds at
// this moment.
func (t *Tracker) intervals() (leecher, seed time.Duration) {
	if t.interval > 0 {
		return t.interval, t.interval
	}
	i := autoInterval(t.leechers.Load(), t.seeds.Load(), t.rate)
	return i, i * SeedIntervalFactor
}

// ttlFor is how long a peer handed interval stays listed.
func (t *Tracker) ttlFor(interval time.Duration) time.Duration {
	if t.ttl > 0 {
		return t.ttl
	}
	return max(3*interval, minPeerTTL)
}

// Failure reasons; clients show them to their users.
const (
	reasonBadToken    = "unknown job token"
	reasonBadInfoHash = "torrent not part of this job"
	reasonBadRequest  = "malformed announce"
	reasonNotAllowed  = "peer address is not one of the job's hosts"
	reasonFull        = "peer limit of this torrent reached; retry later"
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
	left     int64 // -1: not sent
	event    string
	numWant  int
	compact  bool
}

// ServeHTTP answers an announce. Every answer is a bencoded dictionary with
// status 200, failures included, as BEP 3 clients expect.
//
// The answer carries no Date and no Content-Type header (net/http adds
// both unless told not to): they were about 60 of the 230 bytes an answer
// put on the bastion's link, and at 100 announces a second on a 2 Mbit/s
// link the tracker's answers were 17 kB/s, 7 % of it (docs/BENCHMARKS.md
// section 2). BitTorrent clients read neither.
func (t *Tracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Date"], h["Content-Type"] = nil, nil
	if !t.tokenOK(r.URL.Path) {
		t.refuse(w, r, reasonBadToken)
		return
	}
	a, reason := parseAnnounce(r)
	if reason == "" && !t.allowedAddr(a.addr.Addr()) {
		reason = reasonNotAllowed
	}
	if reason != "" {
		t.refuse(w, r, reason)
		return
	}
	resp, reason := t.handle(a)
	if reason != "" {
		t.refuse(w, r, reason, "info_hash", a.infoHash.HexString(), "peer", a.addr.String())
		return
	}
	t.announces.Add(1)
	writeBencode(w, resp)
}

func (t *Tracker) refuse(w http.ResponseWriter, r *http.Request, reason string, attrs ...any) {
	t.refusals.Add(1)
	t.log.Debug("announce refused", append([]any{"reason", reason, "remote", r.RemoteAddr}, attrs...)...)
	writeBencode(w, failure{reason})
}

func (t *Tracker) tokenOK(path string) bool {
	rest, ok := strings.CutPrefix(path, AnnouncePath)
	if !ok || t.token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(rest), []byte(t.token)) == 1
}

func (t *Tracker) allowedAddr(ip netip.Addr) bool {
	if t.allowed == nil {
		return true
	}
	_, ok := t.allowed[ip]
	return ok
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
// connection's source, except when the announce arrives from loopback: nodes
// that reach the tracker through an SSH tunnel announce from 127.0.0.1 and
// name their real address as ipv4= or ip=, which is then used when it is a
// literal, dialable IP. From anywhere else ip= is ignored, so that a peer
// cannot list an address it does not announce from.
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

	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return a, reasonBadRequest
	}
	src, err := netip.ParseAddr(host)
	if err != nil {
		return a, reasonBadRequest
	}
	ip := src.Unmap().WithZone("")
	if ip.IsLoopback() {
		for _, key := range []string{"ipv4", "ip"} {
			if v, err := netip.ParseAddr(q.Get(key)); err == nil && usable(v) {
				ip = v.Unmap()
				break
			}
		}
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

// handle records the announce and builds the answer, or says why it is
// refused. Its cost does not grow with the swarm: O(log n) to update the
// store and O(numwant) to sample it.
func (t *Tracker) handle(a announce) (response, string) {
	s, ok := t.swarms[a.infoHash]
	if !ok {
		return response{}, reasonBadInfoHash
	}
	now := t.now()
	t.sweep(now)
	leecherInterval, seedInterval := t.intervals()

	s.mu.Lock()
	defer s.mu.Unlock()
	t.expire(s, now)
	e := s.byID[a.peerID]
	interval := leecherInterval
	if a.event == "stopped" {
		if e != nil {
			t.count(e.seed(), -1)
			s.remove(e)
		}
		a.numWant = 0
	} else {
		left := a.left
		if left < 0 { // not sent: the event says, or what we knew
			switch {
			case a.event == "completed":
				left = 0
			case e != nil:
				left = e.Left
			}
		}
		if left == 0 {
			interval = seedInterval
		}
		expires := now.Add(t.ttlFor(interval))
		switch {
		case e != nil:
			if wasSeed := e.seed(); wasSeed != (left == 0) {
				t.count(wasSeed, -1)
				t.count(!wasSeed, +1)
			}
			s.update(e, a.addr, left, now, expires)
		case len(s.byID) >= t.maxPeers:
			if !s.warnedFull {
				s.warnedFull = true
				t.log.Warn("tracker refuses new peers: the torrent has reached its peer limit",
					"info_hash", a.infoHash.HexString(), "max_peers", t.maxPeers, "peer", a.addr.String())
			}
			return response{}, reasonFull
		default:
			e = s.insert(Peer{ID: a.peerID, Addr: a.addr, Left: left, LastSeen: now}, expires)
			t.count(e.seed(), +1)
		}
	}
	minInterval := t.minInterval
	if minInterval <= 0 {
		minInterval = leecherInterval
	}
	resp := response{
		Interval:    int64(interval / time.Second),
		MinInterval: int64(minInterval / time.Second),
		Complete:    len(s.seeds),
		Incomplete:  len(s.leechers),
	}
	var buf [MaxNumWant]*entry
	others := s.sample(buf[:0], a.numWant, a.peerID, a.addr)
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
	return resp, ""
}

// count adds delta to the tracker-wide count of seeds or leechers.
func (t *Tracker) count(seed bool, delta int64) {
	if seed {
		t.seeds.Add(delta)
	} else {
		t.leechers.Add(delta)
	}
}

// compactPeers encodes peers as BEP 23 (IPv4: 4-byte address, 2-byte port,
// big endian) and BEP 7 (IPv6: 16 + 2 bytes) strings.
func compactPeers(peers []*entry) (v4, v6 []byte) {
	for _, p := range peers {
		ip, port := p.Addr.Addr(), p.Addr.Port()
		if ip.Is4() {
			if v4 == nil {
				v4 = make([]byte, 0, 6*len(peers))
			}
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

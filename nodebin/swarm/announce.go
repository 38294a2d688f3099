package swarm

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/tracker"
	trHttp "github.com/anacrolix/torrent/tracker/http"
)

// Announce timing.
const (
	// minAnnounceInterval is the shortest interval honoured, whatever the
	// tracker says.
	minAnnounceInterval = time.Second
	// announceTimeout bounds one announce.
	announceTimeout = 10 * time.Second
	// maxAnnounceRetry bounds the wait after failed announces (1 s, 2 s,
	// 4 s, ... up to this).
	maxAnnounceRetry = 15 * time.Second
	// stopTimeout bounds the "stopped" announces when the client closes.
	stopTimeout = time.Second
)

// announcer tells the job's tracker about the node's torrents, in place of
// anacrolix's announcer: one goroutine and one kept-alive HTTP connection
// for all of them (anacrolix opens a connection per announce), each
// torrent announced again after the interval the tracker's last answer
// asked for, and "completed" sent as soon as a torrent is complete so the
// tracker can hand the node out as a seed. The peers an answer lists are
// added only to torrents still downloading: a complete torrent serves the
// peers that dial it and dials nobody, so once a node is done the only
// periodic work it does per torrent is the announce, at the tracker's pace.
type announcer struct {
	tc     trHttp.Client
	opt    trHttp.AnnounceOpt
	peerID [20]byte
	port   uint16
	key    int32
	log    *slog.Logger
	// maxConns is the torrents' connection limit.
	maxConns int
	wake     chan struct{} // capacity 1

	mu   sync.Mutex
	list []*announced
}

// announced is one torrent's announce state; owned by the announcer's
// goroutine except next and completeNow, guarded by mu.
type announced struct {
	t           *torrent.Torrent
	left        func() int64 // bytes not verified yet
	next        time.Time
	started     bool // the tracker accepted our "started"
	incomplete  bool // the torrent missed data when first announced
	completed   bool // "completed" was accepted
	failures    int
	completeNow bool // completion reported; announce it now
}

func newAnnouncer(rawURL string, publicIP net.IP, maxConns int, log *slog.Logger) (*announcer, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("announce URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("announce URL %q: want http or https", u.Redacted())
	}
	return &announcer{
		tc:       trHttp.NewClient(u, trHttp.NewClientOpts{AllowKeepAlive: true}),
		opt:      trHttp.AnnounceOpt{ClientIp4: publicIP},
		key:      rand.Int32(),
		log:      log,
		maxConns: maxConns,
		wake:     make(chan struct{}, 1),
	}, nil
}

// add starts announcing t, whose unverified bytes left tells.
func (a *announcer) add(t *torrent.Torrent, left func() int64) {
	a.mu.Lock()
	a.list = append(a.list, &announced{t: t, left: left, next: time.Now()})
	a.mu.Unlock()
	a.poke()
}

// completed announces t's completion now rather than at its next turn.
func (a *announcer) completed(ih metainfo.Hash) {
	a.mu.Lock()
	for _, an := range a.list {
		if an.t.InfoHash() == ih && !an.completed {
			an.completeNow = true
			an.next = time.Now()
		}
	}
	a.mu.Unlock()
	a.poke()
}

func (a *announcer) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run announces until ctx ends, then sends "stopped" for every torrent the
// tracker knows (best effort, within stopTimeout).
func (a *announcer) run(ctx context.Context, peerID [20]byte, port int) {
	a.peerID, a.port = peerID, uint16(port)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			a.stop()
			return
		}
		now := time.Now()
		var due []*announced
		next := now.Add(time.Hour)
		a.mu.Lock()
		for _, an := range a.list {
			if !an.next.After(now) {
				due = append(due, an)
			} else if an.next.Before(next) {
				next = an.next
			}
		}
		a.mu.Unlock()
		for _, an := range due {
			if ctx.Err() == nil {
				a.announce(ctx, an)
			}
		}
		if len(due) > 0 {
			continue // recompute: announcing took time
		}
		timer.Reset(time.Until(next)) // no stale expiry to drain since Go 1.23
		select {
		case <-ctx.Done():
			a.stop()
			return
		case <-a.wake:
		case <-timer.C:
		}
	}
}

func (a *announcer) announce(ctx context.Context, an *announced) {
	t := an.t
	missing := an.left()
	if !an.started {
		an.incomplete = missing > 0
	}
	ev := tracker.None
	switch {
	case !an.started:
		ev = tracker.Started
	case missing == 0 && an.incomplete && !an.completed:
		ev = tracker.Completed
	}
	resp, err := a.do(ctx, t, ev, missing)
	now := time.Now()
	a.mu.Lock()
	if err != nil {
		an.failures++
		an.next = now.Add(min(time.Second<<min(an.failures-1, 4), maxAnnounceRetry))
		a.mu.Unlock()
		a.log.Debug("announce failed", "infohash", t.InfoHash().HexString(), "event", ev, "failures", an.failures, "err", err)
		return
	}
	an.failures = 0
	switch ev {
	case tracker.Started:
		an.started = true
	case tracker.Completed:
		an.completed = true
	}
	an.next = now.Add(max(time.Duration(resp.Interval)*time.Second, minAnnounceInterval))
	if an.completeNow && !an.completed && missing == 0 {
		an.next = now // "started" went first; "completed" follows at once
	}
	an.completeNow = false
	a.mu.Unlock()
	if missing > 0 && len(resp.Peers) > 0 {
		a.addPeers(t, resp.Peers)
	}
}

// numWant is how many peers to ask the tracker for: as many as t has free
// connection slots while it downloads, none once it is complete (a seed
// dials nobody) or when it leaves. Without it the tracker sends its
// default 50 on every announce, and at 100 hosts × 5 layers on 2 Mbit/s
// links those answers took half of the bastion's link.
func (a *announcer) numWant(t *torrent.Torrent, ev tracker.AnnounceEvent, missing int64) int {
	if ev == tracker.Stopped || missing == 0 {
		return 0
	}
	return max(a.maxConns-len(t.PeerConns()), 0)
}

// addPeers gives a downloading torrent as many of the tracker's peers as
// it has free connection slots, and none while its slots are full.
//
// anacrolix dials every peer it holds while it may, and a full torrent may
// whenever its connections lean one way by two (say three incoming, one
// outgoing): the new connection then replaces one of the others at once,
// and the blocks that one had in flight are lost or arrive after their
// requests moved elsewhere. Given peers on every announce while full, the
// nodes of a 10-host job (100 MB at 6 Mbit/s, 20 slots each) added 5,549
// connections in 3.5 minutes, 28 % of what they uploaded was wasted, and
// a node cost 96 CPU-s per GB received; with peers only for free slots,
// 667 connections, 14 % and 54 (docs/BENCHMARKS.md section 1).
// A dial that fails leaves its slot to the next announce's peers.
func (a *announcer) addPeers(t *torrent.Torrent, list []trHttp.Peer) {
	if peers := pickPeers(list, a.maxConns-len(t.PeerConns())); len(peers) > 0 {
		t.AddPeers(peers)
	}
}

// pickPeers returns up to free of list's peers, at random.
func pickPeers(list []trHttp.Peer, free int) []torrent.PeerInfo {
	if free <= 0 {
		return nil
	}
	list = slices.Clone(list)
	rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	peers := make([]torrent.PeerInfo, 0, min(free, len(list)))
	for _, p := range list[:min(free, len(list))] {
		peers = append(peers, torrent.PeerInfo{
			Addr:   &net.TCPAddr{IP: p.IP, Port: p.Port},
			Source: torrent.PeerSourceTracker,
		})
	}
	return peers
}

func (a *announcer) do(ctx context.Context, t *torrent.Torrent, ev tracker.AnnounceEvent, missing int64) (tracker.AnnounceResponse, error) {
	st := t.Stats()
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	// anacrolix's HTTP tracker client never sends numwant (v1.61.0), so
	// it goes onto the request here.
	opt := a.opt
	want := "numwant=" + strconv.Itoa(a.numWant(t, ev, missing))
	opt.HttpRequestDirector = func(r *http.Request) error {
		r.URL.RawQuery += "&" + want
		return nil
	}
	resp, err := a.tc.Announce(ctx, tracker.AnnounceRequest{
		InfoHash:   t.InfoHash(),
		PeerId:     a.peerID,
		Downloaded: st.BytesReadUsefulData.Int64(),
		Uploaded:   st.BytesWrittenData.Int64(),
		Left:       missing,
		Event:      ev,
		Key:        a.key,
		NumWant:    -1,
		Port:       a.port,
	}, opt)
	if err != nil {
		return resp, fmt.Errorf("announce %s: %w", ev, err)
	}
	return resp, nil
}

// stop tells the tracker the node leaves, so that peers stop dialing it.
func (a *announcer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	a.mu.Lock()
	list := append([]*announced(nil), a.list...)
	a.mu.Unlock()
	for _, an := range list {
		if !an.started || ctx.Err() != nil {
			continue
		}
		if _, err := a.do(ctx, an.t, tracker.Stopped, an.left()); err != nil {
			a.log.Debug("stopped announce failed", "infohash", an.t.InfoHash().HexString(), "err", err)
		}
	}
	a.tc.Close()
}

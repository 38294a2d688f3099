package seed

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/layercast/layercast/nodebin/sockopt"
)

// Config is how the bastion's seeder serves a job's swarm.
type Config struct {
	// ListenAddr is host:port to accept peers on; port 0 picks one.
	ListenAddr string
	// AllowedIPs are the job's hosts; every other address is refused before
	// it can send a byte. An empty list admits no remote peer at all.
	AllowedIPs []string
	// AllowLoopback admits 127.0.0.0/8 and ::1 too: with --tunnel, nodes
	// reach the seeder through sshd, which connects from loopback.
	AllowLoopback bool
	// MaxRate caps the seeder's total upload in bytes/s; 0 is unlimited.
	MaxRate int64
	// Limiter, when set, is the budget the seeder's upload draws from in
	// place of its own of MaxRate: the bastion shares one (NewLimiter)
	// with its other uploads to the hosts.
	Limiter *rate.Limiter
	// MaxSending is how many connections may send blocks at once; 0 means
	// DefaultMaxSending. The others' served requests wait their turn, in
	// order. Each connection's socket holds at most notSentLowat unsent
	// bytes, so this bounds the TCP flows leaving the bastion with data,
	// not only the goroutines: hundreds of hosts × layers of bulk flows
	// through the bastion's link would keep its switch or NIC queue full,
	// and the few packets of the job's SSH sessions (heartbeats, progress
	// acknowledgements) would be lost over and over until TCP's backoff
	// outgrew the node's heartbeat timeout (100 lab hosts at 4 Mbit/s: 17
	// hosts lost; docs/BENCHMARKS.md). A handful of flows fills any link the
	// bastion has; they only need to be to different hosts, which the
	// rotation gives.
	MaxSending int
	// StarveAfter is the least time a downloading connection that owns no
	// piece and waits for no other host may go without reporting a piece
	// before the seeder serves it what other hosts already have; 0 means
	// 3 s. The seeder waits longer when hosts take longer per piece (see
	// policy).
	StarveAfter time.Duration
	Logger      *slog.Logger
}

// Stats is the seeder's transfer so far.
type Stats struct {
	Uploaded int64 // bytes of piece data sent
	// Resent is the piece data that had been sent before, by why it went
	// again (Resent.Total for all of it).
	Resent Resends
	// Withdrawn is bytes of served blocks not sent after all: by their
	// turn to be sent their peer could have them from another host.
	Withdrawn int64
	Rate      float64 // bytes/s since the previous Stats call
	Peers     int     // distinct remote IPs connected, over all layers
}

// Resends is the piece data a seeder sent again, in bytes, by why.
type Resends struct {
	// Rescue went to hosts that got nothing from their peers for a while
	// (the policy's starving connections).
	Rescue int64 `json:"rescue"`
	// Stuck were pieces whose one holder did not pass them on.
	Stuck int64 `json:"stuck"`
	// IdleOwner were pieces taken from, or given back by, a connection
	// that went quiet on them before it had them whole.
	IdleOwner int64 `json:"idle_owner"`
	// OwnerLeft were pieces whose connection closed before it reported
	// them.
	OwnerLeft int64 `json:"owner_left"`
	// Other were asked again by the connection they went to, or went to
	// peers without the fast extension (served whatever they ask).
	Other int64 `json:"other"`
}

// Total is every byte sent again.
func (r Resends) Total() int64 { return r.Rescue + r.Stuck + r.IdleOwner + r.OwnerLeft + r.Other }

// Plus returns r and o added up, cause by cause.
func (r Resends) Plus(o Resends) Resends {
	return Resends{
		Rescue: r.Rescue + o.Rescue, Stuck: r.Stuck + o.Stuck, IdleOwner: r.IdleOwner + o.IdleOwner,
		OwnerLeft: r.OwnerLeft + o.OwnerLeft, Other: r.Other + o.Other,
	}
}

// Policy timings (see policy).
const (
	defaultStarveAfter = 3 * time.Second
	ownerGrace         = 500 * time.Millisecond
	ownerIdle          = 5 * time.Second
	pokeEvery          = 250 * time.Millisecond
	tickEvery          = 100 * time.Millisecond
	// activeBytes is about how much of the pieces it owns a connection
	// may have waiting to be sent (at least two pieces): enough to keep
	// its link busy between two sends, little enough that a slow host
	// does not hold pieces a fast one could have (see policy).
	activeBytes = 2 << 20
	// DefaultMaxSending is Config.MaxSending when zero. Four, not eight:
	// each flow then holds a congestion window large enough to recover a
	// lost packet by fast retransmit instead of a timeout. With eight, a
	// 2 Mbit/s bastion serving 40 hosts dropped 7,302 packets and
	// retransmitted 12,054 segments (6 %) in a 378 s job; with four, 323
	// and 2,895; with two, 130 and 2,419, but its link then sat a tenth
	// idle, its flows' receivers busy with their peers' data. Not shown
	// at 100 hosts: on the lab at 95 % CPU that job took 2.62 × size ÷
	// rate with four against 2.38–2.43 × with eight, one run each
	// (docs/BENCHMARKS.md section 2).
	DefaultMaxSending = 4
	// notSentLowat is the unsent bytes a connection's socket may hold
	// (TCP_NOTSENT_LOWAT): a 32 KiB tail drains in 66 ms at 4 Mbit/s and
	// is refilled long before it does at 10 Gbit/s.
	notSentLowat = 32 << 10
	// maxConns bounds the connections the seeder keeps open.
	maxConns = 4096
)

// Seeder serves a job's layers over the BitTorrent peer wire protocol.
type Seeder struct {
	log     *slog.Logger
	cfg     Config
	allowed map[netip.Addr]struct{}
	ln      *net.TCPListener
	limiter *rate.Limiter
	pace    *semaphore.Weighted // one block at a time waits for limiter
	sending *semaphore.Weighted // Config.MaxSending slots
	peerID  [20]byte

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	uploaded atomic.Int64
	resent   [numResendCauses]atomic.Int64
	// withdrawn counts the bytes of served blocks found stale (Stats).
	withdrawn atomic.Int64
	open      atomic.Int64 // connections accepted and not yet closed
	// inHand counts the connections holding a served block: waiting for
	// a sending slot or sending it.
	inHand atomic.Int64

	mu       sync.Mutex
	torrents map[metainfo.Hash]*torrent
	conns    map[*conn]struct{}
	hosts    map[netip.Addr]*hostRecord // by remote IP, for the job's length
	closed   bool
	lastUp   int64
	lastAt   time.Time

	// holds counts the Hold calls of the pause in force, not yet
	// released; while it is above zero no block starts. unheld is closed
	// when the pause ends; pausedAt is when it began. pauseLeft is the
	// pause budget, refilled last at refilledAt (see Hold).
	holdMu     sync.Mutex
	holds      int
	unheld     chan struct{}
	pausedAt   time.Time
	pauseLeft  time.Duration
	refilledAt time.Time
}

// torrent is one seeded layer.
type torrent struct {
	layer *layerInfo

	mu    sync.Mutex
	pol   *policy
	conns map[*peer]*conn
}

// NewSeeder starts serving layers on cfg.ListenAddr. It keeps serving until
// Close; ctx only bounds the start.
func NewSeeder(ctx context.Context, cfg Config, layers []Layer) (*Seeder, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StarveAfter <= 0 {
		cfg.StarveAfter = defaultStarveAfter
	}
	if cfg.MaxRate < 0 {
		return nil, fmt.Errorf("seeder config: max rate %d is negative", cfg.MaxRate)
	}
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(cfg.MaxRate)
	}
	if cfg.MaxSending < 0 {
		return nil, fmt.Errorf("seeder config: max sending %d is negative", cfg.MaxSending)
	}
	if cfg.MaxSending == 0 {
		cfg.MaxSending = DefaultMaxSending
	}
	allowed := make(map[netip.Addr]struct{}, len(cfg.AllowedIPs))
	for _, s := range cfg.AllowedIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("seeder config: allowed IP %q: %w", s, err)
		}
		allowed[ip.Unmap()] = struct{}{}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("seeder listen on %q: %w", cfg.ListenAddr, err)
	}
	s := &Seeder{
		log:      logger,
		cfg:      cfg,
		allowed:  allowed,
		ln:       ln.(*net.TCPListener),
		limiter:  cfg.Limiter,
		pace:     semaphore.NewWeighted(1),
		sending:  semaphore.NewWeighted(int64(cfg.MaxSending)),
		torrents: make(map[metainfo.Hash]*torrent),
		conns:    make(map[*conn]struct{}),
		hosts:    make(map[netip.Addr]*hostRecord),
		lastAt:   time.Now(),
		// The first pause may take the whole budget.
		pauseLeft:  MaxPauses,
		refilledAt: time.Now(),
	}
	copy(s.peerID[:], "-LC0001-")
	rand.Read(s.peerID[8:])
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.Add(layers...); err != nil {
		s.Close(ctx)
		return nil, err
	}
	s.wg.Add(2)
	go s.acceptLoop()
	go s.tickLoop()
	return s, nil
}

// NewLimiter is an upload budget of maxRate bytes/s (0: unlimited) for
// Config.Limiter.
func NewLimiter(maxRate int64) *rate.Limiter {
	if maxRate == 0 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	// A burst of a tenth of a second, at least one block of the largest size.
	return rate.NewLimiter(rate.Limit(maxRate), int(max(maxBlockLen, maxRate/10)))
}

// Port is the port the seeder listens on.
func (s *Seeder) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Add seeds more layers (see openLayer for the check of each file). A layer
// already seeded is left as it is.
func (s *Seeder) Add(layers ...Layer) error {
	for _, l := range layers {
		info, f, err := openLayer(l)
		if err != nil {
			return fmt.Errorf("seed %s: %w", l.Path, err)
		}
		f.Close() // every connection opens its own descriptor
		s.mu.Lock()
		if _, ok := s.torrents[info.infoHash]; !ok {
			s.torrents[info.infoHash] = &torrent{
				layer: info,
				pol: newPolicy(info, policyConfig{
					maxActive:   max(2, int(activeBytes/info.pieceLen)),
					starveAfter: s.cfg.StarveAfter,
					ownerGrace:  ownerGrace,
					ownerIdle:   ownerIdle,
					pokeEvery:   pokeEvery,
				}),
				conns: make(map[*peer]*conn),
			}
		}
		s.mu.Unlock()
	}
	return nil
}

// allow reports whether a peer at ip may connect.
func (s *Seeder) allow(ip netip.Addr) bool {
	ip = ip.Unmap()
	if _, ok := s.allowed[ip]; ok {
		return true
	}
	return s.cfg.AllowLoopback && ip.IsLoopback()
}

func (s *Seeder) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.AcceptTCP()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			s.log.Warn("seeder accept", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		addr := nc.RemoteAddr().(*net.TCPAddr).AddrPort()
		if !s.allow(addr.Addr()) || s.open.Load() >= maxConns {
			s.log.Debug("seeder refused a peer", "peer", addr, "open", s.open.Load())
			nc.Close()
			continue
		}
		s.open.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			if err := s.serveConn(nc); err != nil {
				s.log.Debug("seeder connection ended", "peer", addr, "err", err)
			}
		}()
	}
}

// serveConn runs one connection from handshake to close.
func (s *Seeder) serveConn(nc *net.TCPConn) error {
	defer nc.Close()
	stop := context.AfterFunc(s.ctx, func() { nc.Close() }) // Close ends it at any stage
	defer stop()
	if err := nc.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		return err
	}
	h, err := readHandshake(nc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	t := s.torrents[h.infoHash]
	s.mu.Unlock()
	if t == nil {
		return fmt.Errorf("handshake for unknown torrent %x", h.infoHash)
	}
	raw, err := nc.SyscallConn()
	if err == nil {
		err = sockopt.SetNotSentLowat(raw, notSentLowat)
	}
	if err != nil {
		s.log.Debug("seeder: unsent bytes not bounded; MaxSending bounds senders, not flows", "err", err)
	}
	f, err := os.Open(t.layer.path)
	if err != nil {
		return fmt.Errorf("open layer file: %w", err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	c := &conn{
		s: s, t: t, nc: nc, file: f, fast: h.fast(), ctx: ctx, cancel: cancel,
		log:   s.log.With("peer", nc.RemoteAddr().String()),
		queue: requestQueue{limit: maxQueued},
		held:  requestQueue{limit: maxQueued},
		wake:  make(chan struct{}, 1),
	}
	// Reply, say what we have and unchoke: a seeder never chokes.
	reply := handshake{infoHash: h.infoHash, peerID: s.peerID}
	reply.reserved[fastByte] |= fastBit
	b := reply.append(nil)
	if c.fast {
		b = appendSimple(b, msgHaveAll)
	} else {
		b = appendFullBitfield(b, t.layer.numPieces)
	}
	b = appendSimple(b, msgUnchoke)
	if !s.register(c) {
		return errors.New("seeder closed")
	}
	defer s.unregister(c)
	if _, err := nc.Write(b); err != nil {
		return fmt.Errorf("send handshake: %w", err)
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return err
	}

	writeErr := make(chan error, 1)
	go func() {
		err := c.writeLoop()
		c.close()
		writeErr <- err
	}()
	err = c.readLoop()
	c.close()
	if werr := <-writeErr; err == nil || errors.Is(err, net.ErrClosed) {
		err = werr
	}
	if errors.Is(err, errPeerComplete) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// hostOf returns the record shared by the connections from addr's host;
// s.mu held.
func (s *Seeder) hostOf(addr net.Addr) *hostRecord {
	ip, ok := remoteIP(addr)
	if !ok {
		return nil
	}
	h := s.hosts[ip]
	if h == nil {
		h = &hostRecord{}
		s.hosts[ip] = h
	}
	return h
}

// remoteIP is a TCP peer address's IP, IPv4 unmapped.
func remoteIP(addr net.Addr) (netip.Addr, bool) {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	return ta.AddrPort().Addr().Unmap(), true
}

func (s *Seeder) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	c.t.mu.Lock()
	c.peer = c.t.pol.join(!c.fast, s.hostOf(c.nc.RemoteAddr()), time.Now())
	c.t.conns[c.peer] = c
	c.t.mu.Unlock()
	return true
}

func (s *Seeder) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.mu.Lock()
	unreachable := c.unreachable
	c.mu.Unlock()
	c.t.mu.Lock()
	c.t.pol.leave(c.peer, time.Now(), unreachable)
	delete(c.t.conns, c.peer)
	c.t.mu.Unlock()
}

// tickLoop runs each torrent's policy clock: owners that went quiet, starving
// connections, pokes.
func (s *Seeder) tickLoop() {
	defer s.wg.Done()
	tk := time.NewTicker(tickEvery)
	defer tk.Stop()
	var swept time.Time
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tk.C:
			if now.Sub(swept) >= livenessEvery {
				swept = now
				s.dropUnreachable(now)
			}
			s.mu.Lock()
			ts := make([]*torrent, 0, len(s.torrents))
			for _, t := range s.torrents {
				ts = append(ts, t)
			}
			s.mu.Unlock()
			for _, t := range ts {
				t.tick(now, s.saturated())
			}
		}
	}
}

func (t *torrent) tick(now time.Time, saturated bool) {
	t.mu.Lock()
	all := make([]*conn, 0, len(t.conns))
	for _, c := range t.conns {
		all = append(all, c)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.recheck(now)
	}
	t.mu.Lock()
	pokes, rescued := t.pol.tick(now, saturated, func(pr *peer) connState { return t.conns[pr].requestState() })
	conns := make([]*conn, len(pokes))
	for i, p := range pokes {
		conns[i] = t.conns[p.peer]
	}
	starving := make([]*conn, len(rescued))
	missing := make([]int, len(rescued))
	for i, pr := range rescued {
		starving[i], missing[i] = t.conns[pr], t.layer.numPieces-pr.nHave
	}
	t.mu.Unlock()
	for i, c := range starving {
		c.log.Info("seeder serves a host that gets nothing from its peers", "layer", t.layer.infoHash.HexString(), "missing_pieces", missing[i])
	}
	for i, p := range pokes {
		conns[i].queueCtrl(appendIndex(nil, msgSuggest, uint32(p.piece)))
	}
}

// saturated reports whether more connections hold a served block than
// there are sending slots: the link has work queued behind the senders.
func (s *Seeder) saturated() bool {
	return s.inHand.Load() > int64(s.cfg.MaxSending)
}

// Stats returns a snapshot of the transfer.
func (s *Seeder) Stats() Stats {
	st := Stats{Uploaded: s.uploaded.Load(), Withdrawn: s.withdrawn.Load(), Resent: Resends{
		Rescue:    s.resent[resendRescue].Load(),
		Stuck:     s.resent[resendStuck].Load(),
		IdleOwner: s.resent[resendIdleOwner].Load(),
		OwnerLeft: s.resent[resendOwnerLeft].Load(),
		Other:     s.resent[resendOther].Load(),
	}}
	s.mu.Lock()
	defer s.mu.Unlock()
	ips := make(map[netip.Addr]struct{})
	for c := range s.conns {
		if ip, ok := remoteIP(c.nc.RemoteAddr()); ok {
			ips[ip] = struct{}{}
		}
	}
	st.Peers = len(ips)
	now := time.Now()
	if dt := now.Sub(s.lastAt).Seconds(); dt > 0 {
		st.Rate = float64(st.Uploaded-s.lastUp) / dt
	}
	s.lastUp, s.lastAt = st.Uploaded, now
	return st
}

// Close stops seeding: it closes the listener and every connection and
// waits for them until ctx is done.
func (s *Seeder) Close(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	for _, c := range conns {
		c.close()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("wait for connections: %w", ctx.Err()))
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close seeder: %w", err)
	}
	return nil
}

// Hold keeps the seeder from starting blocks until release is called;
// holds taken while one is in force join its pause, and blocks already in
// a socket still leave. The bastion holds it while a host's job spec is on
// its way: on a bastion link the seeder keeps full, a spec written behind
// its blocks took up to 10 s to reach the host (docs/SCALE.md, "The job
// specs"), while a spec is a few kilobytes.
//
// A pause ends after max at the latest, and all pauses together draw on a
// budget of MaxPauses that refills at a ninth of the time passing: the
// seeder sends about nine tenths of the time at least, however many
// hosts start at once or one after the other. A Hold with the budget spent
// pauses nothing.
func (s *Seeder) Hold(max time.Duration) (release func()) {
	s.holdMu.Lock()
	defer s.holdMu.Unlock()
	if s.holds == 0 {
		now := time.Now()
		s.refillLocked(now)
		if s.pauseLeft <= 0 {
			return func() {}
		}
		s.unheld, s.pausedAt = make(chan struct{}), now
		pause := s.unheld
		time.AfterFunc(min(max, s.pauseLeft), func() {
			s.holdMu.Lock()
			defer s.holdMu.Unlock()
			if s.unheld == pause && s.holds > 0 {
				s.endPauseLocked()
			}
		})
	}
	s.holds++
	pause := s.unheld
	var once sync.Once
	return func() {
		once.Do(func() {
			s.holdMu.Lock()
			defer s.holdMu.Unlock()
			if s.unheld != pause || s.holds == 0 {
				return // that pause ended already
			}
			if s.holds--; s.holds == 0 {
				s.endPauseLocked()
			}
		})
	}
}

// MaxPauses is the budget of Hold's pauses: what the seeder may spend
// paused at once, refilled at a ninth of the time passing. It is sized
// for a job's start, when every host's spec is on its way at once: 40
// specs of a 250 MB image are 1.2 MB, 3.3 s of a 3 Mbit/s link, and with
// a budget of 1 s the seeder took the link back while most were still
// queued, and SSH's retransmission backoff held the last spec for 40 s
// (docs/SCALE.md, "The job specs").
const MaxPauses = 5 * time.Second

// refillLocked adds to the pause budget what the time since the last
// refill earned; holdMu is held.
func (s *Seeder) refillLocked(now time.Time) {
	s.pauseLeft = min(MaxPauses, s.pauseLeft+now.Sub(s.refilledAt)/9)
	s.refilledAt = now
}

// endPauseLocked ends the pause in force and charges it to the budget;
// holdMu is held.
func (s *Seeder) endPauseLocked() {
	now := time.Now()
	s.refillLocked(now)
	s.pauseLeft -= now.Sub(s.pausedAt)
	s.holds = 0
	close(s.unheld)
}

// waitUnheld returns once no Hold is in force, or with ctx's error.
func (s *Seeder) waitUnheld(ctx context.Context) error {
	s.holdMu.Lock()
	held, unheld := s.holds > 0, s.unheld
	s.holdMu.Unlock()
	if !held {
		return nil
	}
	select {
	case <-unheld:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitRate returns once the rate budget allows n bytes, or with ctx's
// error having spent none of it.
//
// One block at a time waits for the budget (pace), the others wait their
// turn before it. A rate.Limiter hands a reservation's tokens back when it
// is cancelled only if no later reservation was made, so had every sending
// connection reserved its block at once, a cancelled block's share would
// be lost. Under --max-rate, blocks wait long for their turn and nodes
// cancel what does not come (a node that receives nothing for a few
// seconds plans its requests anew): 40 lab hosts at 500 kbit/s got 2 of
// 10 MB and then nothing, the budget spent on blocks nobody wanted any
// more (docs/BENCHMARKS.md section 7).
func (s *Seeder) waitRate(ctx context.Context, n int) error {
	if err := s.pace.Acquire(ctx, 1); err != nil {
		return err
	}
	defer s.pace.Release(1)
	return s.limiter.WaitN(ctx, n)
}

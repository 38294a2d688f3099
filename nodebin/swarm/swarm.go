// Package swarm is the node's BitTorrent side: it downloads the missing
// layers of a job from the swarm (the bastion's seeder and the other hosts)
// and keeps seeding until closed.
//
// A layer file is done when every piece passed its SHA-1 check against the
// metainfo. The node does not hash the whole file again: the runtime
// checks what it imports (docker load each layer's diff ID against the
// image config; containerd the blob's digest on commit and the node the
// diff ID it applied), so a file that is not the layer fails the import
// and leaves no image (testbed/e2e TestJob_LayerAlteredAfterVerifyFailsTheImport).
//
// Every layer is its own single-file torrent whose metainfo travels in the
// job spec; the data goes to Dir/<digest-hex>.
package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/RoaringBitmap/roaring"
	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Config is how one node joins the job's swarm.
type Config struct {
	Dir        string   // where layer files are written: Dir/<digest-hex>
	Announce   string   // tracker announce URL, token included
	Seeders    []string // host:port added as peers directly
	AllowedIPs []string // only these IPs may be peers (others refused in and out); empty = nobody
	ListenPort int      // 0 = any
	PublicIP   string   // sent to the tracker as ip=
	MaxRate    int64    // bytes/s, download and upload each; 0 = unlimited
	Logger     *slog.Logger

	// tune adjusts the anacrolix configuration before the client starts;
	// benchmarks use it to rate-limit a client like a host's link.
	tune func(*torrent.ClientConfig)
}

// Client is one node's BitTorrent client for one job.
type Client struct {
	cfg   Config
	log   *slog.Logger
	cl    *torrent.Client
	store *fileStorage
	// listener takes the peers' connections (see peerListener); the
	// client does not close a listener it was given.
	listener net.Listener
	seeders  map[netip.AddrPort]struct{}
	// maxConns is the client's connection limit per torrent.
	maxConns int

	fromSeeder atomic.Int64
	fromPeers  atomic.Int64
	connsAdded atomic.Int64

	ann        *announcer // nil without a tracker
	stopAnn    context.CancelFunc
	annStopped chan struct{}

	mu       sync.Mutex
	layers   []*layerState
	byDigest map[string]*layerState
	lastRecv int64
	lastAt   time.Time
}

type layerState struct {
	layer jobspec.Layer
	t     *torrent.Torrent
	lf    *layerFile
	path  string
	quiet quietWatch // owned by Download's loop (redialSeeder)
}

// New starts a client listening on cfg.ListenPort (all addresses).
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" {
		return nil, errors.New("swarm config: dir is empty")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg:      cfg,
		log:      logger,
		store:    newFileStorage(),
		seeders:  make(map[netip.AddrPort]struct{}),
		byDigest: make(map[string]*layerState),
		lastAt:   time.Now(),
	}
	for _, s := range cfg.Seeders {
		ap, err := resolveAddrPort(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("seeder %q: %w", s, err)
		}
		c.seeders[ap] = struct{}{}
	}
	allow, err := newAllowList(cfg.AllowedIPs)
	if err != nil {
		return nil, fmt.Errorf("swarm config: %w", err)
	}
	cc := clientConfig(logger, c.store)
	if cfg.MaxRate > 0 {
		cc.UploadRateLimiter, cc.DownloadRateLimiter = rate.NewLimiter(rate.Limit(cfg.MaxRate), 0), rate.NewLimiter(rate.Limit(cfg.MaxRate), 0)
	}
	if allow != nil {
		cc.IPBlocklist = allow
	}
	if cfg.PublicIP != "" {
		ip := net.ParseIP(cfg.PublicIP)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("swarm config: public IP %q is not an IPv4 address", cfg.PublicIP)
		}
		cc.PublicIp4 = ip.To4()
	}
	cc.Callbacks.ReceivedUsefulData = append(cc.Callbacks.ReceivedUsefulData, c.countReceived)
	cc.Callbacks.PeerConnAdded = append(cc.Callbacks.PeerConnAdded, func(*torrent.PeerConn) { c.connsAdded.Add(1) })
	if cfg.tune != nil {
		cfg.tune(cc)
	}
	c.maxConns = cc.EstablishedConnsPerTorrent
	if cfg.Announce != "" {
		if c.ann, err = newAnnouncer(cfg.Announce, cc.PublicIp4, cc.EstablishedConnsPerTorrent, logger); err != nil {
			return nil, fmt.Errorf("swarm config: %w", err)
		}
	}
	l, err := peerListener(ctx, cfg.ListenPort)
	if err != nil {
		return nil, err
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("start bittorrent client: %w", err)
	}
	c.cl, c.listener = cl, l
	cl.AddListener(l)
	cl.AddDialer(peerDialer())
	if c.ann != nil {
		// The announcer lives as long as the client, not as the caller's ctx.
		actx, stop := context.WithCancel(context.WithoutCancel(ctx))
		c.stopAnn, c.annStopped = stop, make(chan struct{})
		go func() {
			defer close(c.annStopped)
			c.ann.run(actx, cl.PeerID(), cl.LocalPort())
		}()
	}
	return c, nil
}

// ConnsAdded is how many peer connections the client has set up or
// accepted so far, over all its layers. Each costs a handshake, bitfields
// and about 250 KiB of buffers, so a swarm that keeps replacing its
// connections shows here.
func (c *Client) ConnsAdded() int64 { return c.connsAdded.Load() }

// LocalPort is the port the client listens on.
func (c *Client) LocalPort() int { return c.cl.LocalPort() }

func resolveAddrPort(ctx context.Context, hostport string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolve %s: %w", host, err)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(addrs[0].Unmap().String(), port))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ap, nil
}

// countReceived splits useful bytes by origin. It runs under the torrent
// client's lock: counters only.
func (c *Client) countReceived(e torrent.ReceivedUsefulDataEvent) {
	n := int64(len(e.Message.Piece))
	if c.isSeeder(e.Peer.RemoteAddr.String()) {
		c.fromSeeder.Add(n)
	} else {
		c.fromPeers.Add(n)
	}
}

func (c *Client) isSeeder(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	_, ok := c.seeders[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	return ok
}

func (c *Client) layerPath(l jobspec.Layer) string {
	return filepath.Join(c.cfg.Dir, strings.TrimPrefix(l.Digest, "sha256:"))
}

// add registers the layer's file and adds its torrent to the client;
// onWhole is called once when every piece of a file not complete is.
func (c *Client) add(l jobspec.Layer, complete bool, onWhole func()) (*layerState, *layerFile, *metainfo.Info, error) {
	if !jobspec.ValidDigest(l.Digest) {
		return nil, nil, nil, fmt.Errorf("layer digest %q is not a sha256 digest", l.Digest)
	}
	mi, err := metainfo.Load(bytes.NewReader(l.Torrent))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("layer %s: read metainfo: %w", l.Digest, err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("layer %s: read info: %w", l.Digest, err)
	}
	if info.TotalLength() != l.Size {
		return nil, nil, nil, fmt.Errorf("layer %s: torrent holds %d bytes, layer has %d", l.Digest, info.TotalLength(), l.Size)
	}
	ih := mi.HashInfoBytes()
	path := c.layerPath(l)
	lf, err := c.store.register(ih, path, &info, complete, onWhole)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	t, _ := c.cl.AddTorrentOpt(torrent.AddTorrentOpts{
		InfoHash:  ih,
		InfoBytes: mi.InfoBytes,
		Storage:   c.store,
		ChunkSize: chunkSize,
	})
	if t.Info() == nil {
		return nil, nil, nil, fmt.Errorf("layer %s: torrent client rejected the info", l.Digest)
	}
	t.AddPeers(c.seederPeers())
	if c.ann != nil {
		c.ann.add(t, func() int64 { return lf.length - lf.verified.Load() })
	}

	ls := &layerState{layer: l, t: t, lf: lf, path: path}
	c.mu.Lock()
	if _, ok := c.byDigest[l.Digest]; !ok {
		c.layers = append(c.layers, ls)
	}
	c.byDigest[l.Digest] = ls
	c.mu.Unlock()
	return ls, lf, &info, nil
}

// seederPeers are the bastion's seeder addresses as peers to add.
func (c *Client) seederPeers() []torrent.PeerInfo {
	peers := make([]torrent.PeerInfo, 0, len(c.seeders))
	for ap := range c.seeders {
		peers = append(peers, torrent.PeerInfo{Addr: net.TCPAddrFromAddrPort(ap), Source: torrent.PeerSourceDirect})
	}
	return peers
}

// redialSeeder adds the seeder again to every started, unfinished layer
// that has no connection to it. anacrolix does not redial a direct peer
// whose connection dropped, and a layer that lost its other peers too
// would otherwise wait for the tracker, or forever.
//
// Nor does anacrolix let the seeder back in while the layer's connection
// slots are full: it replaces a connection only once it is a minute old in
// the worse half, or wastes chunks. The slots fill with peers (they connect
// as the layer starts, and a seeder that refuses what the swarm has is the
// least helpful connection), and only the seeder, which rescues a starving
// connection, can then send what those peers do not:
//   - when all of them lack the same pieces the node lacks (the node waited
//     that minute: 10 hosts × 250 MB, BENCHMARKS section 4), a full layer
//     without the seeder drops one peer that has none of the pieces it
//     lacks;
//   - when they have what it lacks and send nothing (hosts that hang, or
//     whose uplinks are taken, with their connections open), a layer that
//     received nothing for quietLayerAfter drops the peer that sent it the
//     least, one per quiet period.
func (c *Client) redialSeeder(layers []*layerState, now time.Time) {
	for _, ls := range layers {
		if ls.t.Complete().Bool() {
			continue
		}
		stats := ls.t.Stats()
		quiet := ls.quiet.observe(stats.BytesReadUsefulData.Int64(), now)
		conns := ls.t.PeerConns()
		connected := false
		for _, pc := range conns {
			if c.isSeeder(pc.RemoteAddr.String()) {
				connected = true
				break
			}
		}
		if connected {
			continue
		}
		ls.t.AddPeers(c.seederPeers())
		if len(conns) < c.maxConns {
			continue
		}
		if pc := uselessPeer(conns, ls.lf.missing()); pc != nil {
			c.log.Debug("drop a peer that has none of the missing pieces, to reach the seeder", "digest", ls.layer.Digest, "peer", pc.RemoteAddr.String())
			pc.Close()
			continue
		}
		if quiet >= quietLayerAfter {
			pc := leastHelpful(conns)
			c.log.Debug("received nothing for a while: drop the peer that sent least, to reach the seeder", "digest", ls.layer.Digest, "peer", pc.RemoteAddr.String(), "quiet", quiet)
			pc.Close()
			ls.quiet.since = now
		}
	}
}

// quietLayerAfter is how long a started layer that misses pieces may
// receive nothing useful, with its connection slots full and none of them
// the seeder, before it gives a peer's slot to the seeder. A layer of a
// healthy swarm receives a block from one of its peers every few seconds
// even on a slow link (1 Mbit/s shared by four started layers: a 256 KiB
// block per layer about every 8 s).
const quietLayerAfter = 20 * time.Second

// quietWatch tells how long a layer has received no useful byte.
type quietWatch struct {
	useful int64     // useful bytes received at since
	since  time.Time // when useful last changed
}

// observe records the layer's useful bytes so far at now and returns how
// long they have not changed.
func (w *quietWatch) observe(useful int64, now time.Time) time.Duration {
	if useful != w.useful || w.since.IsZero() {
		w.useful, w.since = useful, now
	}
	return now.Sub(w.since)
}

// leastHelpful returns the connection whose peer sent the fewest useful
// bytes; conns is not empty.
func leastHelpful(conns []*torrent.PeerConn) *torrent.PeerConn {
	var least *torrent.PeerConn
	var leastUseful int64
	for _, pc := range conns {
		st := pc.Stats()
		if u := st.BytesReadUsefulData.Int64(); least == nil || u < leastUseful {
			least, leastUseful = pc, u
		}
	}
	return least
}

// uselessPeer returns the first connection whose peer has none of the
// missing pieces, or nil.
func uselessPeer(conns []*torrent.PeerConn, missing []int) *torrent.PeerConn {
	for _, pc := range conns {
		if !hasAny(pc.PeerPieces(), missing) {
			return pc
		}
	}
	return nil
}

func hasAny(pieces *roaring.Bitmap, want []int) bool {
	for _, i := range want {
		if pieces.Contains(uint32(i)) {
			return true
		}
	}
	return false
}

// redialEvery is how often a download checks it is still connected to the
// seeder, and that its layers still receive.
const redialEvery = 5 * time.Second

// stallAfter is how long a node that misses pieces may receive nothing
// before the connections of its unfinished layers plan their requests anew
// (kickStalled). A node, not a layer: a node with several layers started
// on a slow link gets a block of each only every few seconds (at 1 Mbit/s
// and four layers started, one of 256 KiB per layer every 8 s).
//
// Each kick that brings nothing doubles the wait before the next, up to
// maxStallWait. A kick cancels every request the node has out and makes
// them again, and the seeder answers each cancel with a reject: when the
// whole swarm waits for a slow bastion, every node kicking every 5 s was
// what filled the bastion's link (200 lab hosts at 1 Mbit/s: the seeder's
// connections sent 530 packets a second, 306 of them rejects and the rest
// acknowledgements, 10 % of the link's packets were dropped, and the
// seeder's blocks got through at a few kB/s). One kick frees a request nobody was asked for
// again; more of them in a row only repeat it.
const (
	stallAfter   = 5 * time.Second
	maxStallWait = time.Minute
)

// stallWatch tells when a node has received nothing useful for stallAfter,
// and then for twice as long after each stall, up to maxStallWait.
type stallWatch struct {
	useful int64         // useful bytes received at since
	since  time.Time     // when useful last changed, or the last kick
	wait   time.Duration // before the next stall
}

// stalled records that the node has received useful bytes so far at now;
// it reports a stall once nothing came for the wait, and doubles the wait.
func (w *stallWatch) stalled(useful int64, now time.Time) bool {
	if useful != w.useful || w.since.IsZero() {
		w.useful, w.since, w.wait = useful, now, stallAfter
		return false
	}
	if now.Sub(w.since) < w.wait {
		return false
	}
	w.since, w.wait = now, min(2*w.wait, maxStallWait)
	return true
}

// kickStalled makes every connection of each layer that misses pieces
// plan its requests anew.
//
// anacrolix plans a connection's requests only when something happens on
// that connection (a block, a have, an unchoke). When a peer rejects a
// request, as the seeder does for a piece another host already holds, the
// request is dropped and no other connection is told. If the node's other
// connections go to complete peers, which have nothing new to announce,
// nobody is asked for that piece: one host of ten waited about a minute
// for its last piece, held by all its peers (250 MB at 200 Mbit/s). Until
// tracker peers came only for free slots (see addPeers), the peers dialing
// in every second happened to wake it. Disallowing and allowing a layer's
// download is anacrolix's public way to have every connection plan again;
// it cancels the requests outstanding, which brought nothing for
// stallAfter anyway.
func (c *Client) kickStalled(layers []*layerState) {
	for _, ls := range layers {
		if missing := ls.lf.length - ls.lf.verified.Load(); missing > 0 {
			c.log.Debug("received nothing for a while: the layer's connections plan their requests anew", "digest", ls.layer.Digest, "missing", missing)
			ls.t.DisallowDataDownload()
			ls.t.AllowDataDownload()
		}
	}
}

// Seed serves layers whose files are already at Dir/<digest-hex> and known to
// be good (verified earlier); their content is not rehashed.
func (c *Client) Seed(layers []jobspec.Layer) error {
	for _, l := range layers {
		if _, _, _, err := c.add(l, true, nil); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	return nil
}

// startAhead bounds how far ahead of the image order a node downloads: the
// next layer starts once the layers already started miss fewer than this
// many bytes. The node imports layers strictly in image order, so layers
// that complete in order let the import of each one overlap the download of
// the next, leaving only the last layer's import after the last byte. Had
// every layer started at once, they would share the link and all finish
// together at the end, with the whole import after it (DID bench, issue 5).
// 32 MiB is 16 pieces of the usual 2 MiB: enough for rarest-first to spread
// different pieces over the hosts, and small layers still start together.
const startAhead = 32 << 20

// Download fetches the given layers, in image order and overlapping (see
// startAhead), and calls onDone(layer, path) as each one completes, every
// piece checked against its metainfo (in completion order, from one
// goroutine). It returns when all are done or on the first error / ctx
// cancel. The client keeps seeding the layers it has until Close.
func (c *Client) Download(ctx context.Context, layers []jobspec.Layer, onDone func(jobspec.Layer, string)) error {
	whole := make(chan int, len(layers)) // index in queue, each once
	queue := make([]*layerState, 0, len(layers))
	for i, l := range layers {
		ls, _, _, err := c.add(l, false, func() { whole <- i })
		if err != nil {
			return fmt.Errorf("download: %w", err)
		}
		queue = append(queue, ls)
	}
	started := 0
	startMore := func() {
		missing := make([]int64, len(queue))
		for i, ls := range queue[:started] {
			missing[i] = ls.layer.Size - ls.lf.verified.Load()
		}
		for i := started; i < len(queue); i++ {
			missing[i] = queue[i].layer.Size
		}
		for n := startable(missing, started); started < n; started++ {
			queue[started].t.DownloadAll()
			queue[started].quiet.since = time.Now()
		}
	}
	startMore()
	var stall stallWatch
	redial := time.NewTicker(redialEvery)
	defer redial.Stop()
	for left := len(layers); left > 0; {
		// A verified piece is what lowers the started layers' missing
		// bytes, so the next layer may start only then: no polling.
		pieceDone := c.store.pieceDone
		if started == len(queue) {
			pieceDone = nil // every layer started
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("download: %w", ctx.Err())
		case now := <-redial.C:
			c.redialSeeder(queue[:started], now)
			if stall.stalled(c.fromSeeder.Load()+c.fromPeers.Load(), now) {
				c.kickStalled(queue[:started])
			}
		case <-pieceDone:
			startMore()
		case i := <-whole:
			ls := queue[i]
			left--
			c.log.Debug("layer complete", "digest", ls.layer.Digest)
			if c.ann != nil {
				c.ann.completed(ls.t.InfoHash())
			}
			startMore()
			if onDone != nil {
				onDone(ls.layer, ls.path)
			}
		}
	}
	return nil
}

// startable returns how many layers, counted from the first, may be
// downloading: those already started plus, in order, the next ones while the
// bytes the started layers still miss stay under startAhead. At least one
// layer is always started.
func startable(missing []int64, started int) int {
	var inFlight int64
	for _, m := range missing[:started] {
		inFlight += m
	}
	n := started
	for n < len(missing) && (n == 0 || inFlight < startAhead) {
		inFlight += missing[n]
		n++
	}
	return n
}

// Stats is a snapshot for progress events: per-layer done/total, peers,
// bytes by origin. Rate is measured since the previous call.
func (c *Client) Stats() jobspec.Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := jobspec.Progress{
		FromSeeder: c.fromSeeder.Load(),
		FromPeers:  c.fromPeers.Load(),
		Uploaded:   c.uploaded(),
	}
	peers := make(map[string]struct{})
	for _, ls := range c.layers {
		p.Layers = append(p.Layers, jobspec.LayerProgress{
			Digest: ls.layer.Digest,
			Done:   ls.lf.verified.Load(),
			Total:  ls.layer.Size,
		})
		for _, pc := range ls.t.PeerConns() {
			ip, _, _ := net.SplitHostPort(pc.RemoteAddr.String()) // a host, not a connection
			peers[ip] = struct{}{}
		}
	}
	p.Peers = len(peers)
	now := time.Now()
	recv := p.FromSeeder + p.FromPeers
	if dt := now.Sub(c.lastAt).Seconds(); dt > 0 {
		p.Rate = float64(recv-c.lastRecv) / dt
	}
	c.lastRecv, c.lastAt = recv, now
	return p
}

// Close stops seeding and closes every connection and file. It tells the
// tracker the node leaves first, waiting at most about a second for it.
func (c *Client) Close() error {
	if c.stopAnn != nil {
		c.stopAnn()
		<-c.annStopped
	}
	errs := c.cl.Close()
	if err := c.listener.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close peer listener: %w", err))
	}
	errs = append(errs, c.store.close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close swarm client: %w", err)
	}
	return nil
}

func (c *Client) uploaded() int64 {
	s := c.cl.ConnStats()
	return s.BytesWrittenData.Int64()
}

// InfoHashOf returns the infohash of a bencoded torrent metainfo, 40 hex
// digits: what jobspec.Layer.InfoHash names it by.
func InfoHashOf(torrent []byte) (string, error) {
	mi, err := metainfo.Load(bytes.NewReader(torrent))
	if err != nil {
		return "", fmt.Errorf("read metainfo: %w", err)
	}
	return mi.HashInfoBytes().HexString(), nil
}

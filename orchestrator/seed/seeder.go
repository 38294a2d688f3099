package seed

import (
	"bytes"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/iplist"
	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

// ErrFileMismatch means a layer file does not hold what its torrent says.
var ErrFileMismatch = errors.New("layer file does not match its torrent")

// Layer is one file to seed with the metainfo MakeTorrent built from it.
type Layer struct {
	Path    string
	Torrent []byte
}

// Config is how the bastion's seeder joins a job's swarm.
type Config struct {
	// ListenAddr is host:port to accept peers on; port 0 picks one.
	ListenAddr string
	// Announce is the job's announce URL (token included); empty: no tracker.
	Announce string
	// PublicIP is sent to the tracker as ip=, the address nodes dial.
	PublicIP string
	// AllowedIPs are the job's hosts; every other address is refused, in and
	// out. An empty list admits no remote peer at all.
	AllowedIPs []string
	// AllowLoopback admits 127.0.0.0/8 and ::1 too: with --tunnel, nodes
	// reach the seeder through sshd, which connects from loopback.
	AllowLoopback bool
	Logger        *slog.Logger
}

// Stats is the seeder's transfer so far.
type Stats struct {
	Uploaded int64   // bytes of piece data sent
	Rate     float64 // bytes/s since the previous Stats call
	Peers    int     // distinct connected peers over all layers
}

// Seeder seeds a job's layers.
type Seeder struct {
	log   *slog.Logger
	cfg   Config
	cl    *torrent.Client
	store *readOnlyStorage

	mu       sync.Mutex
	torrents []*torrent.Torrent
	lastUp   int64
	lastAt   time.Time
}

// NewSeeder starts a client on cfg.ListenAddr seeding layers.
func NewSeeder(ctx context.Context, cfg Config, layers []Layer) (*Seeder, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	allow, err := newAllowList(cfg.AllowedIPs, cfg.AllowLoopback)
	if err != nil {
		return nil, fmt.Errorf("seeder config: %w", err)
	}
	host, portStr, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("seeder listen address %q: %w", cfg.ListenAddr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("seeder listen port %q: %w", portStr, err)
	}
	s := &Seeder{log: logger, cfg: cfg, store: newReadOnlyStorage(), lastAt: time.Now()}
	cc := clientConfig(logger, s.store)
	cc.ListenHost = func(string) string { return host }
	cc.ListenPort = int(port)
	cc.IPBlocklist = allow
	if cfg.PublicIP != "" {
		ip := net.ParseIP(cfg.PublicIP)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("seeder public IP %q is not an IPv4 address", cfg.PublicIP)
		}
		cc.PublicIp4 = ip.To4()
	}
	cl, err := torrent.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("start seeder: %w", err)
	}
	s.cl = cl
	if err := s.Add(layers...); err != nil {
		s.Close(ctx)
		return nil, err
	}
	return s, nil
}

// Port is the port the seeder listens on.
func (s *Seeder) Port() int { return s.cl.LocalPort() }

// Add seeds more layers. Each file is trusted to be the one its torrent was
// made from (the layer cache is content-addressed and MakeTorrent hashed it);
// Add checks its size and the hashes of its first, middle and last pieces,
// which catches a wrong path or a truncated file without rehashing it all.
func (s *Seeder) Add(layers ...Layer) error {
	for _, l := range layers {
		t, err := s.add(l)
		if err != nil {
			return fmt.Errorf("seed %s: %w", l.Path, err)
		}
		s.mu.Lock()
		s.torrents = append(s.torrents, t)
		s.mu.Unlock()
	}
	return nil
}

func (s *Seeder) add(l Layer) (*torrent.Torrent, error) {
	mi, err := metainfo.Load(bytes.NewReader(l.Torrent))
	if err != nil {
		return nil, fmt.Errorf("read metainfo: %w", err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, fmt.Errorf("read info: %w", err)
	}
	if info.IsDir() {
		return nil, errors.New("torrent has several files; a layer torrent has one")
	}
	f, err := os.Open(l.Path)
	if err != nil {
		return nil, fmt.Errorf("open layer file: %w", err)
	}
	if err := spotCheck(f, &info); err != nil {
		f.Close()
		return nil, err
	}
	ih := mi.HashInfoBytes()
	s.store.add(ih, f)
	t, _ := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih, InfoBytes: mi.InfoBytes, Storage: s.store})
	if t.Info() == nil {
		return nil, errors.New("torrent client rejected the info")
	}
	if s.cfg.Announce != "" {
		t.AddTrackers([][]string{{s.cfg.Announce}})
	}
	return t, nil
}

// spotCheck compares the file's size and a few piece hashes with the info.
func spotCheck(f *os.File, info *metainfo.Info) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat layer file: %w", err)
	}
	if fi.Size() != info.TotalLength() {
		return fmt.Errorf("%w: %d bytes, torrent says %d", ErrFileMismatch, fi.Size(), info.TotalLength())
	}
	n := info.NumPieces()
	for _, i := range []int{0, n / 2, n - 1} {
		p := info.Piece(i)
		h := sha1.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, p.Offset(), p.Length())); err != nil {
			return fmt.Errorf("read piece %d: %w", i, err)
		}
		if !bytes.Equal(h.Sum(nil), p.V1Hash().Unwrap().Bytes()) {
			return fmt.Errorf("%w: piece %d hash differs", ErrFileMismatch, i)
		}
	}
	return nil
}

// Stats returns a snapshot of the transfer.
func (s *Seeder) Stats() Stats {
	cs := s.cl.Stats()
	st := Stats{Uploaded: cs.BytesWrittenData.Int64()}
	s.mu.Lock()
	defer s.mu.Unlock()
	peers := make(map[string]struct{})
	for _, t := range s.torrents {
		for _, pc := range t.PeerConns() {
			peers[pc.RemoteAddr.String()] = struct{}{}
		}
	}
	st.Peers = len(peers)
	now := time.Now()
	if dt := now.Sub(s.lastAt).Seconds(); dt > 0 {
		st.Rate = float64(st.Uploaded-s.lastUp) / dt
	}
	s.lastUp, s.lastAt = st.Uploaded, now
	return st
}

// Close stops seeding. anacrolix sends "stopped" announces while closing;
// Close waits for that until ctx is done, then closes the files anyway.
func (s *Seeder) Close(ctx context.Context) error {
	done := make(chan []error, 1)
	go func() { done <- s.cl.Close() }()
	var errs []error
	select {
	case errs = <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close seeder client: %w", ctx.Err()))
	}
	errs = append(errs, s.store.close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close seeder: %w", err)
	}
	return nil
}

// allowList blocks every IP that is not allowed (see swarm's twin: the two
// sides share no code). anacrolix consults IPBlocklist before dialing and
// when accepting.
type allowList struct {
	allowed  map[netip.Addr]struct{}
	loopback bool
}

func newAllowList(ips []string, loopback bool) (*allowList, error) {
	a := &allowList{allowed: make(map[netip.Addr]struct{}, len(ips)), loopback: loopback}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("allowed IP %q: %w", s, err)
		}
		a.allowed[ip.Unmap()] = struct{}{}
	}
	return a, nil
}

func (a *allowList) Lookup(ip net.IP) (iplist.Range, bool) {
	if addr, ok := netip.AddrFromSlice(ip); ok {
		addr = addr.Unmap()
		if _, allowed := a.allowed[addr]; allowed || (a.loopback && addr.IsLoopback()) {
			return iplist.Range{}, false
		}
	}
	return iplist.Range{First: ip, Last: ip, Description: "not a host of this job"}, true
}

func (a *allowList) NumRanges() int { return len(a.allowed) }

// clientConfig mirrors the node side's tuning (nodebin/swarm): TCP only, no
// DHT/PEX/uPnP/webseeds, no header obfuscation, IPv4 only.
func clientConfig(logger *slog.Logger, store *readOnlyStorage) *torrent.ClientConfig {
	cc := torrent.NewDefaultClientConfig()
	cc.Slogger = logger
	cc.DefaultStorage = store
	cc.Seed = true
	cc.NoDHT = true
	cc.DhtStartingNodes = nil
	cc.PeriodicallyAnnounceTorrentsToDht = false
	cc.DisablePEX = true
	cc.DisableUTP = true
	cc.DisableIPv6 = true
	cc.NoDefaultPortForwarding = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	cc.MaxAllocPeerRequestDataPerConn = 4 << 20 // 64 blocks of the nodes' 64 KiB requests
	cc.DialRateLimiter = rate.NewLimiter(100, 100)
	return cc
}

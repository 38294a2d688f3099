package orchestrator

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator/seed"
	"github.com/layercast/layercast/tracker"
)

// served is what the serve step hands the fleet step: where the tracker
// and the seeder listen on the bastion, the layers they serve, and how to
// read the seeder's transfer.
type served struct {
	// torrents are the layers' metainfo by digest, infoHashes their
	// infohashes (hex).
	torrents    map[string][]byte
	infoHashes  map[string]string
	trackerAddr string // 127.0.0.1:port; the port is the one nodes reach
	seederAddr  string
	// announceURL is the tracker's URL for a node that reaches it at
	// hostport.
	announceURL func(hostport string) string
	// seederStats reads the seeder's transfer so far.
	seederStats func() SeederStats
	// hold pauses the seeder's blocks until release or max (seed.Seeder.Hold).
	hold func(max time.Duration) (release func())
}

// serveStep runs the job's tracker and the bastion's seeder. Both listen on
// every address of the bastion (loopback only under --tunnel) and answer
// only the job's hosts; nodes reach them at the address their SSH
// connection sees, at --bastion-addr, or through --tunnel.
type serveStep struct {
	// stopTracker ends the tracker's server; trackerDone then says how
	// it ended.
	stopTracker context.CancelFunc
	trackerDone chan error
	seeder      *seed.Seeder
	// final is what the seeder had sent when it stopped.
	final *seed.Stats
}

func (s *serveStep) Title() string { return "start the tracker and seed the layers" }

func (s *serveStep) Run(ctx context.Context, j *job) error {
	var hashes []metainfo.Hash
	var seedLayers []seed.Layer
	torrents, infoHashes := map[string][]byte{}, map[string]string{}
	// One torrent per layer file, however many images (platforms) and
	// places in an image hold it.
	for _, l := range j.layers() {
		mi, ih, err := torrentFor(j.cacheDir, l.Path, l.Digest)
		if err != nil {
			return err
		}
		torrents[l.Digest], infoHashes[l.Digest] = mi, ih.HexString()
		hashes = append(hashes, ih)
		seedLayers = append(seedLayers, seed.Layer{Path: l.Path, Torrent: mi})
	}

	// The job's hosts are the only peers the tracker lists and the only
	// sources the bastion's ports answer. Under --tunnel every node
	// arrives through sshd on loopback, so loopback is all that listens.
	hostIPs := make([]netip.Addr, 0, len(j.allowed)) // not nil: an empty list admits nobody
	for _, a := range j.allowed {
		if ip, err := netip.ParseAddr(a); err == nil {
			hostIPs = append(hostIPs, ip)
		}
	}
	bind := ""
	if j.opts.Tunnel {
		bind = "127.0.0.1"
	}
	tr := tracker.New(tracker.Config{
		Token: j.token, InfoHashes: hashes, Interval: j.opts.AnnounceInterval,
		// Under --max-rate the answers stay a small part of the cap.
		AnnounceRate: tracker.AnnounceRateFor(j.opts.MaxRate),
		// A node that restarts announces under a new peer ID: some slack.
		MaxPeers:   len(j.hosts) + 8,
		AllowedIPs: hostIPs,
		Logger:     j.log,
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, "0"))
	if err != nil {
		return fmt.Errorf("listen for the tracker: %w", err)
	}
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopTracker, s.trackerDone = stop, make(chan error, 1)
	go func() {
		s.trackerDone <- tracker.Serve(serveCtx, ln, tr, tracker.ServeConfig{
			AllowedIPs: hostIPs, AllowLoopback: j.opts.Tunnel, Logger: j.log,
		})
	}()

	// The seeder does not announce: every node is given its address
	// directly, which also works through --tunnel, where the address a node
	// dials differs from host to host.
	s.seeder, err = seed.NewSeeder(ctx, seed.Config{
		ListenAddr:    net.JoinHostPort(bind, "0"),
		Limiter:       j.egress,
		AllowedIPs:    j.allowed,
		AllowLoopback: j.opts.Tunnel,
		Logger:        j.log,
	}, seedLayers)
	if err != nil {
		return fmt.Errorf("start seeder: %w", err)
	}
	seeder := s.seeder
	j.served = &served{
		torrents:    torrents,
		infoHashes:  infoHashes,
		trackerAddr: net.JoinHostPort("127.0.0.1", portOf(ln.Addr().String())),
		seederAddr:  fmt.Sprintf("127.0.0.1:%d", seeder.Port()),
		announceURL: func(hostport string) string { return tr.AnnounceURL("http://" + hostport) },
		seederStats: func() SeederStats {
			st := seeder.Stats()
			return SeederStats{Uploaded: st.Uploaded, Rate: st.Rate, Peers: st.Peers}
		},
		hold: seeder.Hold,
	}
	j.log.Info("serving", "tracker", j.served.trackerAddr, "seeder", j.served.seederAddr)
	return nil
}

// sent is what the seeder sent during the job.
func (s *serveStep) sent() seed.Stats {
	switch {
	case s.final != nil:
		return *s.final
	case s.seeder != nil:
		return s.seeder.Stats()
	}
	return seed.Stats{}
}

func (s *serveStep) Cleanup(ctx context.Context, j *job) {
	if s.seeder != nil {
		st := s.seeder.Stats()
		s.final = &st
		if r := st.Resent; r.Total() > 0 {
			b := textfmt.Bytes
			j.log.Info("seeder sent some pieces again", "again", b(r.Total()), "rescue", b(r.Rescue), "stuck", b(r.Stuck),
				"idle_owner", b(r.IdleOwner), "owner_left", b(r.OwnerLeft), "other", b(r.Other), "withdrawn", b(st.Withdrawn))
		}
		if err := s.seeder.Close(ctx); err != nil {
			j.log.Warn("stop seeder", "err", err)
		}
	}
	if s.stopTracker != nil {
		s.stopTracker()
		select {
		case err := <-s.trackerDone:
			if err != nil {
				j.log.Warn("stop tracker", "err", err)
			}
		case <-ctx.Done():
			j.log.Warn("stop tracker", "err", ctx.Err())
		}
	}
	j.emit(Event{Kind: EventTeardown, Message: "tracker and seeder stopped"})
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// torrentFor returns the layer's metainfo, from the cache when an earlier
// job built it: hashing a large layer takes seconds.
func torrentFor(cacheDir, path, digest string) ([]byte, metainfo.Hash, error) {
	cached := filepath.Join(cacheDir, "torrents", strings.TrimPrefix(digest, "sha256:")+".torrent")
	if b, err := os.ReadFile(cached); err == nil {
		if mi, err := metainfo.Load(strings.NewReader(string(b))); err == nil {
			return b, mi.HashInfoBytes(), nil
		}
	}
	b, ih, err := seed.MakeTorrent(path, 0, "")
	if err != nil {
		return nil, ih, fmt.Errorf("layer %s: %w", digest, err)
	}
	if err := os.MkdirAll(filepath.Dir(cached), 0o700); err == nil {
		tmp := cached + ".tmp"
		if os.WriteFile(tmp, b, 0o600) == nil {
			_ = os.Rename(tmp, cached)
		}
	}
	return b, ih, nil
}

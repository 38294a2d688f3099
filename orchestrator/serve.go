package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/seed"
	"github.com/layercast/layercast/tracker"
)

// serveStep runs the job's tracker and the bastion's seeder. Both listen on
// every address of the bastion; nodes reach them at the address their SSH
// connection sees, at --bastion-addr, or through --tunnel.
type serveStep struct {
	layers      []jobspec.Layer
	trackerAddr string // local address, 127.0.0.1:port
	seederAddr  string
	tracker     *tracker.Tracker
	server      *http.Server
	seeder      *seed.Seeder

	mu       sync.Mutex
	uploaded int64
}

func (s *serveStep) Title() string { return "start the tracker and seed the layers" }

func (s *serveStep) Run(ctx context.Context, j *job) error {
	var hashes []metainfo.Hash
	var seedLayers []seed.Layer
	seen := map[metainfo.Hash]bool{}
	for _, l := range j.image.Layers {
		mi, ih, err := j.torrentFor(l.Path, l.Digest)
		if err != nil {
			return err
		}
		s.layers = append(s.layers, jobspec.Layer{
			DiffID: l.DiffID, ChainID: l.ChainID, Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, Torrent: mi,
		})
		if !seen[ih] { // an image may hold the same layer twice
			seen[ih] = true
			hashes = append(hashes, ih)
			seedLayers = append(seedLayers, seed.Layer{Path: l.Path, Torrent: mi})
		}
	}

	s.tracker = tracker.New(tracker.Config{Token: j.token, InfoHashes: hashes, Interval: j.opts.AnnounceInterval, Logger: j.log})
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return fmt.Errorf("listen for the tracker: %w", err)
	}
	s.trackerAddr = net.JoinHostPort("127.0.0.1", portOf(ln.Addr().String()))
	s.server = &http.Server{Handler: s.tracker, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			j.log.Error("tracker stopped", "err", err)
		}
	}()

	// The seeder does not announce: every node is given its address
	// directly, which also works through --tunnel, where the address a node
	// dials differs from host to host.
	s.seeder, err = seed.NewSeeder(ctx, seed.Config{
		ListenAddr:    ":0",
		AllowedIPs:    j.allowedIPs(ctx),
		AllowLoopback: j.opts.Tunnel,
		Logger:        j.log,
	}, seedLayers)
	if err != nil {
		return fmt.Errorf("start seeder: %w", err)
	}
	s.seederAddr = fmt.Sprintf("127.0.0.1:%d", s.seeder.Port())
	j.log.Info("serving", "tracker", s.trackerAddr, "seeder", s.seederAddr)
	return nil
}

// announceURL is the tracker's URL for a node that reaches it at hostport.
func (s *serveStep) announceURL(hostport string) string {
	return s.tracker.AnnounceURL("http://" + hostport)
}

// report emits the seeder's stats twice a second until the returned func is
// called.
func (s *serveStep) report(ctx context.Context, j *job) func() {
	if s.seeder == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				st := s.seeder.Stats()
				s.mu.Lock()
				s.uploaded = st.Uploaded
				s.mu.Unlock()
				j.emit(Event{Kind: EventSeeder, Seeder: &SeederStats{Uploaded: st.Uploaded, Rate: st.Rate, Peers: st.Peers}})
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// egress is the bytes the seeder sent during the job.
func (s *serveStep) egress() int64 {
	if s == nil || s.seeder == nil {
		return 0
	}
	st := s.seeder.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.uploaded, st.Uploaded)
}

func (s *serveStep) Cleanup(ctx context.Context, j *job) {
	if s.seeder != nil {
		st := s.seeder.Stats()
		s.mu.Lock()
		s.uploaded = max(s.uploaded, st.Uploaded)
		s.mu.Unlock()
		if err := s.seeder.Close(ctx); err != nil {
			j.log.Warn("stop seeder", "err", err)
		}
	}
	if s.server != nil {
		if err := s.server.Shutdown(ctx); err != nil {
			j.log.Warn("stop tracker", "err", err)
		}
	}
	j.emit(Event{Kind: EventTeardown, Message: "tracker and seeder stopped"})
}

// torrentFor returns the layer's metainfo, from the cache when an earlier
// job built it: hashing a large layer takes seconds.
func (j *job) torrentFor(path, digest string) ([]byte, metainfo.Hash, error) {
	cached := filepath.Join(j.cacheDir, "torrents", strings.TrimPrefix(digest, "sha256:")+".torrent")
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

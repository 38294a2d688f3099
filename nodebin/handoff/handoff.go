// Package handoff lets a running node hand its own binary on to the job's
// other hosts: it serves the compressed node binary over HTTP, to the job's
// hosts only and a few transfers at a time, so that the bastion uploads the
// binary to a few hosts and every other host fetches it from a peer. It
// serves small documents from memory beside it the same way (the layers'
// torrents, ServeBytes). The fetching host checks what it gets against a
// hash the bastion gave it (the binary's sha256, the torrents' infohashes),
// so this server needs no authentication of its own: it only ever serves
// public, verified bytes.
package handoff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Config is what one node serves, and to whom.
type Config struct {
	// Path is the file to serve: the gzip-compressed node binary.
	Path string
	// Name is the URL path it is served at, without the leading slash;
	// usually "<sha256>.gz". Every other path is 404.
	Name string
	// AllowedIPs (addresses and ranges, jobspec.IPSet) may fetch; every
	// other address gets 403. An empty list admits nobody.
	AllowedIPs []string
	// MaxTransfers bounds concurrent transfers; a request beyond it gets
	// 503 at once, and the fetcher tries another source. Zero means 2: a
	// host serving two fetchers gives each half its link, and the set of
	// hosts that hold the binary doubles about every transfer time.
	MaxTransfers int
	Logger       *slog.Logger
}

// Server serves one file until Close.
type Server struct {
	cfg     Config
	log     *slog.Logger
	f       *os.File
	size    int64
	modTime time.Time
	allowed jobspec.IPSet
	slots   chan struct{}
	srv     *http.Server
	ln      net.Listener
	done    chan struct{}

	transfers atomic.Int64
	sent      atomic.Int64

	// docs are the documents served from memory (ServeBytes), each
	// request holding one of docSlots.
	docMu    sync.RWMutex
	docs     map[string][]byte
	docSlots chan struct{}
	docsSent atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// Start serves cfg.Path on ln until Close. It opens the file once; the file
// may be removed while it is served.
func Start(ln net.Listener, cfg Config) (*Server, error) {
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, "/?#") {
		return nil, fmt.Errorf("handoff: name %q must be one path element", cfg.Name)
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	allowed, err := jobspec.ParseIPSet(cfg.AllowedIPs)
	if err != nil {
		return nil, fmt.Errorf("handoff: %w", err)
	}
	f, err := os.Open(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("handoff: open binary: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("handoff: stat binary: %w", err)
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, f: f, size: fi.Size(), modTime: fi.ModTime(), allowed: allowed,
		slots: make(chan struct{}, cfg.MaxTransfers), ln: ln, done: make(chan struct{}),
		docs: map[string][]byte{}, docSlots: make(chan struct{}, maxDocTransfers),
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		// A transfer of a few MB over a slow link; a stalled fetcher must
		// not hold a slot for ever.
		WriteTimeout:   5 * time.Minute,
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: 8 << 10,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("handoff server stopped", "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// maxDocTransfers bounds the concurrent transfers of documents served
// from memory: tens of kB each, they take a slow link's time for a
// fraction of a second, and a separate bound keeps them from waiting
// behind the binary's transfers.
const maxDocTransfers = 4

// Stats is what the server handed on so far.
type Stats struct {
	Transfers int64 // requests answered with the file (whole or a range)
	Bytes     int64 // bytes of the file sent
	DocBytes  int64 // bytes of documents sent (ServeBytes)
}

// Stats returns the transfers so far.
func (s *Server) Stats() Stats {
	return Stats{Transfers: s.transfers.Load(), Bytes: s.sent.Load(), DocBytes: s.docsSent.Load()}
}

// ServeBytes serves body at /name from now on, beside the file; name is one
// path element other than the file's.
func (s *Server) ServeBytes(name string, body []byte) error {
	if name == "" || name == s.cfg.Name || strings.ContainsAny(name, "/?#") {
		return fmt.Errorf("handoff: document name %q must be one path element other than %q", name, s.cfg.Name)
	}
	s.docMu.Lock()
	defer s.docMu.Unlock()
	s.docs[name] = body
	return nil
}

// ServeHTTP answers GET and HEAD of /Name and of the documents' names to
// allowed addresses.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.admits(r.RemoteAddr) {
		http.Error(w, "not a host of this job", http.StatusForbidden)
		return
	}
	name := strings.TrimPrefix(r.URL.Path, "/")
	s.docMu.RLock()
	doc, isDoc := s.docs[name]
	s.docMu.RUnlock()
	if name != s.cfg.Name && !isDoc {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	slots := s.slots
	if isDoc {
		slots = s.docSlots
	}
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "busy: fetch from another host", http.StatusServiceUnavailable)
		return
	}
	if isDoc {
		w.Header().Set("Content-Type", "application/json")
		http.ServeContent(&countingWriter{ResponseWriter: w, n: &s.docsSent}, r, name, s.modTime, bytes.NewReader(doc))
		return
	}
	s.transfers.Add(1)
	w.Header().Set("Content-Type", "application/gzip")
	cw := &countingWriter{ResponseWriter: w, n: &s.sent}
	// A SectionReader gives every request its own offset on the shared file.
	http.ServeContent(cw, r, s.cfg.Name, s.modTime, io.NewSectionReader(s.f, 0, s.size))
}

func (s *Server) admits(remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	return s.allowed.Contains(ap.Addr())
}

// Close stops serving, ends transfers still in flight when ctx ends, and
// closes the file. Later calls return the first call's result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		<-s.done
		if cerr := s.f.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		if err != nil {
			s.closeErr = fmt.Errorf("stop handoff server: %w", err)
		}
	})
	return s.closeErr
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}

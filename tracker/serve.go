package tracker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"golang.org/x/net/netutil"
)

// Serving defaults. anacrolix (v1.61) opens a new connection for every
// announce and sends a request of well under 1 KiB, answered in under
// 2 KiB; nothing a node does comes near these, so they only bound what an
// idle, slow or hostile client can hold.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	// DefaultIdleTimeout closes kept-alive connections: nodes do not reuse
	// them, so an idle one is only a held file descriptor.
	DefaultIdleTimeout    = 5 * time.Second
	DefaultMaxHeaderBytes = 8 << 10
	// DefaultMaxConns bounds the connections served at once. Further
	// connections wait, unaccepted, in the kernel's backlog until one
	// closes; since an announce holds its connection for about a
	// millisecond, the cap bounds file descriptors without bounding the
	// announce rate.
	DefaultMaxConns        = 256
	DefaultShutdownTimeout = 5 * time.Second
)

// ServeConfig bounds what clients can hold of the tracker's HTTP server.
// Every zero (or negative) field takes its default: no limit can be turned
// off.
type ServeConfig struct {
	ReadHeaderTimeout time.Duration // the request line and headers
	ReadTimeout       time.Duration // the whole request
	WriteTimeout      time.Duration // from the end of the headers to the end of the answer
	IdleTimeout       time.Duration // a kept-alive connection between requests
	MaxHeaderBytes    int           // request line and headers (net/http allows 4 KiB more)
	MaxConns          int           // connections served at once; more wait to be accepted
	// AllowedIPs, when not nil, are the only source addresses whose
	// connections are served; others are closed as soon as they are
	// accepted, before a byte is read. Pass the job's hosts (the bastion's
	// ports shut to strangers), with AllowLoopback under --tunnel, where
	// every announce comes from sshd on loopback. Nil serves everyone.
	AllowedIPs    []netip.Addr
	AllowLoopback bool
	// ShutdownTimeout bounds the wait for answers in flight once ctx is
	// done; connections still open then are closed.
	ShutdownTimeout time.Duration
	// Logger receives net/http's own errors at debug level; nil discards
	// them (net/http would otherwise write them to stderr, under the TUI).
	Logger *slog.Logger
}

func (c ServeConfig) withDefaults() ServeConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Serve answers HTTP requests on ln with h (a *Tracker) under the limits of
// cfg until ctx is done, then shuts down: it stops accepting, lets answers
// in flight finish for up to cfg.ShutdownTimeout, closes every connection
// and ln, and returns nil. It returns early with an error if ln fails.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, cfg ServeConfig) error {
	cfg = cfg.withDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	var l net.Listener = netutil.LimitListener(ln, cfg.MaxConns)
	if cfg.AllowedIPs != nil {
		l = newFilterListener(l, cfg.AllowedIPs, cfg.AllowLoopback, cfg.Logger)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve tracker on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var err error
	if serr := srv.Shutdown(sctx); serr != nil {
		err = errors.Join(fmt.Errorf("shut down tracker: %w", serr), srv.Close())
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve tracker on %s: %w", ln.Addr(), serr))
	}
	return err
}

// filterListener closes connections from sources outside its allow list
// as soon as they are accepted.
type filterListener struct {
	net.Listener
	allowed  map[netip.Addr]struct{}
	loopback bool
	log      *slog.Logger
}

func newFilterListener(l net.Listener, ips []netip.Addr, loopback bool, log *slog.Logger) *filterListener {
	f := &filterListener{Listener: l, allowed: make(map[netip.Addr]struct{}, len(ips)), loopback: loopback, log: log}
	for _, ip := range ips {
		f.allowed[ip.Unmap().WithZone("")] = struct{}{}
	}
	return f
}

func (f *filterListener) Accept() (net.Conn, error) {
	for {
		c, err := f.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if f.admits(c.RemoteAddr()) {
			return c, nil
		}
		f.log.Debug("tracker connection refused: source is not one of the job's hosts", "remote", c.RemoteAddr().String())
		c.Close()
	}
}

func (f *filterListener) admits(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap().WithZone("")
	if f.loopback && ip.IsLoopback() {
		return true
	}
	_, ok := f.allowed[ip]
	return ok
}

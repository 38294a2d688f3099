// Package containerdimage puts an image into containerd for the node binary
// on hosts without a Docker daemon (Kubernetes nodes): which leading layers
// containerd already holds, writing the verified layer files into its
// content store and unpacking them as snapshots for its snapshotter while
// later layers still download, creating the image under its name, checking
// the result, and removing everything a failed job created.
//
// It speaks containerd's gRPC API with Go's own HTTP/2 client and the few
// protobuf messages it needs written by hand (rpc.go, api.go): containerd's
// Go client would add 2.0 MB to the compressed node binary, the API
// module's generated stubs with grpc-go 1.6 MB, this package 0.06 MB.
//
// Every step is one containerd's own unpacker takes: content writes and
// snapshots are held by a lease while the job runs, the image's config
// carries the snapshot GC label, the manifest the content GC labels, and
// the lease goes once the image holds everything.
package containerdimage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Defaults of Config.
const (
	DefaultAddress   = jobspec.DefaultContainerdAddress
	DefaultNamespace = jobspec.DefaultContainerdNamespace // the kubelet's
	// DefaultSnapshotter is used when its plugin loaded; FallbackSnapshotter
	// otherwise (overlayfs needs a backing filesystem that supports it).
	DefaultSnapshotter  = "overlayfs"
	FallbackSnapshotter = "native"
)

// ErrUnresponsive means containerd stopped answering while a call ran.
var ErrUnresponsive = errors.New("containerd is not answering")

// Config says where containerd is and how to talk to it.
type Config struct {
	// Address is the socket path or unix:// URL; DefaultAddress when empty.
	Address string
	// Namespace the image goes into; DefaultNamespace when empty.
	Namespace string
	// Snapshotter to unpack for; when empty DefaultSnapshotter, or
	// FallbackSnapshotter where the default did not load.
	Snapshotter string
	Log         *slog.Logger
	// ProbeEvery is how often a long call checks that containerd still
	// answers, and ProbeTimeout how long each check may take: a daemon
	// that misses one fails the call with ErrUnresponsive. Defaults 10s.
	ProbeEvery, ProbeTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.ProbeEvery <= 0 {
		c.ProbeEvery = 10 * time.Second
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 10 * time.Second
	}
}

// Client is a connection to containerd for one namespace and snapshotter.
type Client struct {
	cfg         Config
	conn        *conn
	version     string
	snapshotter string
	roots       []Root
	// cri: containerd runs the CRI plugin, which names every image it
	// sees created by its ID and may do so late (see settleCRI).
	cri bool
}

// Root is a directory where containerd keeps what an import writes.
type Root struct {
	Path string
	What string // "content store", "overlayfs snapshots"
}

// Connect opens a connection to containerd, asks its version (so that a
// missing daemon or socket permission fails here, with the address in the
// message) and picks the snapshotter.
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	cfg.defaults()
	c := &Client{cfg: cfg, conn: dial(strings.TrimPrefix(cfg.Address, "unix://"))}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := c.apiVersion(vctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reach containerd at %s (is it running, and may this user use it?): %w", cfg.Address, err)
	}
	c.version = v
	if err := c.pickSnapshotter(ctx); err != nil {
		c.Close()
		return nil, err
	}
	cfg.Log.Debug("containerd", "address", cfg.Address, "version", c.version, "namespace", cfg.Namespace, "snapshotter", c.snapshotter, "cri", c.cri)
	return c, nil
}

// pickSnapshotter chooses the configured snapshotter, or the default one
// when its plugin loaded, or the fallback, notes the roots of the
// snapshotter and the content store, and whether the CRI plugin runs.
func (c *Client) pickSnapshotter(ctx context.Context) error {
	plugins, err := c.apiPlugins(c.ns(ctx), "type==io.containerd.snapshotter.v1", "type==io.containerd.content.v1", "type==io.containerd.grpc.v1,id==cri")
	if err != nil {
		return fmt.Errorf("list containerd plugins: %w", err)
	}
	ok := map[string]plugin{}
	var contentRoot string
	for _, p := range plugins {
		if p.Failed {
			continue
		}
		switch p.Type {
		case "io.containerd.content.v1":
			contentRoot = p.Exports["root"]
		case "io.containerd.grpc.v1":
			c.cri = true
		default:
			ok[p.ID] = p
		}
	}
	name := c.cfg.Snapshotter
	switch {
	case name != "":
	case ok[DefaultSnapshotter].ID != "":
		name = DefaultSnapshotter
	default:
		name = FallbackSnapshotter
	}
	p, found := ok[name]
	if !found {
		return fmt.Errorf("containerd at %s has no usable %s snapshotter", c.cfg.Address, name)
	}
	c.snapshotter = name
	if contentRoot != "" {
		c.roots = append(c.roots, Root{Path: contentRoot, What: "containerd content store"})
	}
	if r := p.Exports["root"]; r != "" {
		c.roots = append(c.roots, Root{Path: r, What: "containerd " + name + " snapshots"})
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error {
	c.conn.close()
	return nil
}

// Version is containerd's version, e.g. "1.6.20~ds1".
func (c *Client) Version() string { return c.version }

// Snapshotter is the snapshotter images are unpacked for.
func (c *Client) Snapshotter() string { return c.snapshotter }

// Namespace is the containerd namespace the client works in.
func (c *Client) Namespace() string { return c.cfg.Namespace }

// Roots are the directories an import writes to: the content store gets
// each layer file, the snapshotter its unpacked tree. Paths are as
// containerd sees them.
func (c *Client) Roots() []Root { return c.roots }

// ns returns ctx carrying the client's namespace.
func (c *Client) ns(ctx context.Context) context.Context {
	return withMeta(ctx, callMeta{namespace: c.cfg.Namespace})
}

// withLease returns ctx carrying the namespace and the lease id, so that
// what containerd creates for the call belongs to the lease.
func (c *Client) withLease(ctx context.Context, lease string) context.Context {
	return withMeta(ctx, callMeta{namespace: c.cfg.Namespace, lease: lease})
}

// guard runs fn with a context that is cancelled with ErrUnresponsive when
// containerd stops answering a version request while fn runs: a stopped
// or hung daemon fails the call instead of holding the job forever.
func (c *Client) guard(ctx context.Context, fn func(ctx context.Context) error) error {
	gctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(c.cfg.ProbeEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-gctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(gctx, c.cfg.ProbeTimeout)
			_, err := c.apiVersion(pctx)
			pcancel()
			if err != nil && gctx.Err() == nil {
				cancel(fmt.Errorf("%w within %s: %w", ErrUnresponsive, c.cfg.ProbeTimeout, err))
				return
			}
		}
	}()
	err := fn(gctx)
	if err != nil && ctx.Err() == nil && gctx.Err() != nil {
		return context.Cause(gctx)
	}
	return err
}

// retry runs fn until it succeeds, fails for a reason other than
// containerd being away, or ctx ends: cleanup waits, within its own
// deadline, for a daemon that restarts.
func retry(ctx context.Context, fn func(ctx context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := fn(cctx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// transient reports errors of a daemon that is away, not of a request.
func transient(err error) bool {
	switch statusCode(err) {
	case codeUnavailable, codeDeadlineExceeded:
		return true
	}
	return errors.Is(err, ErrUnresponsive)
}

// Package hostops is what layercast does on a host over one SSH
// connection: probe it (OS, CPU, addresses, Docker access, free space),
// make and remove the job's work dir (and, from a warm node cache, start
// the node in the same session), upload the node binary (compressed,
// checksum-verified, atomically renamed), and remove what earlier jobs
// left behind (work dirs, nodes still running, temporary images).
//
// The connection itself comes from package openssh. The orchestrator
// declares the interface it uses; testing.go has fakes that implement it.
package hostops

import (
	"context"

	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// Dialer opens connections that can do layercast's work on a host. Resolve
// and CheckKeys come from the openssh.Dialer inside.
type Dialer struct {
	*openssh.Dialer
}

// NewDialer reads the user's SSH configuration as openssh.NewDialer does.
func NewDialer(cfg openssh.Config) (*Dialer, error) {
	d, err := openssh.NewDialer(cfg)
	if err != nil {
		return nil, err
	}
	return &Dialer{Dialer: d}, nil
}

// Dial connects to h as openssh.Dialer.Dial does.
func (d *Dialer) Dial(ctx context.Context, h inventory.Host) (*Conn, error) {
	c, err := d.Dialer.Dial(ctx, h)
	if err != nil {
		return nil, err
	}
	return &Conn{transport: c}, nil
}

// transport is what the host operations need of a connection.
// *openssh.Client is the real one.
type transport interface {
	Host() inventory.Host
	Run(ctx context.Context, cmd openssh.Command) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte) error
	Start(ctx context.Context, cmd openssh.Command) (openssh.Process, error)
	Forward(ctx context.Context, localAddr string) (openssh.Forward, error)
	Close() error
}

// Conn is one connection to one host with layercast's operations on it:
// Probe, MakeWorkDir, StartCached, Upload, RemoveWorkDir, CleanStale and
// RemoveTempImages, beside the connection's own Run, Start, Forward and
// Close. Every method is safe for concurrent use.
type Conn struct {
	transport
}

// become is the "1" or "0" the scripts take for the host's become.
func (c *Conn) become() string {
	if c.Host().Become {
		return "1"
	}
	return "0"
}

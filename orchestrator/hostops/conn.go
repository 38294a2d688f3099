// Package fleet reaches the hosts of a job over SSH, the way OpenSSH would:
// ~/.ssh/config (Host aliases, HostName, User, Port, IdentityFile,
// ProxyJump with any number of hops), ssh-agent and key files, and strict
// known_hosts checking with @cert-authority support.
//
// Over one connection per host it probes the host (OS, CPU, addresses,
// Docker access, free space), uploads the node binary (compressed,
// checksum-verified, atomically renamed into a fresh work dir), starts it
// with piped stdio, forwards ports for --tunnel and removes what earlier
// jobs left behind. ForEach fans work out over hosts with a concurrency
// limit.
//
// The orchestrator uses the Dialer and Conn interfaces; testing.go has
// fakes of both.
package fleet

import (
	"context"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// Dialer opens connections to hosts. *SSHDialer is the real one.
type Dialer interface {
	Dial(ctx context.Context, h inventory.Host) (Conn, error)
}

// Conn is one connection to one host: what the orchestrator needs of it.
// *Client is the real one. Every method is safe for concurrent use.
type Conn interface {
	// Host is the inventory host this connection reaches.
	Host() inventory.Host
	// Probe learns about the host without writing to it.
	Probe(ctx context.Context) (Facts, error)
	// Run runs a command to completion and returns its stdout.
	Run(ctx context.Context, cmd Command) ([]byte, error)
	// MakeWorkDir creates the job's fresh temp dir and returns its path.
	MakeWorkDir(ctx context.Context, jobID string) (string, error)
	// Upload puts the node binary into dir and returns its path.
	Upload(ctx context.Context, dir string, bin Binary) (string, error)
	// Start starts a long-running command with piped stdio.
	Start(ctx context.Context, cmd Command) (Process, error)
	// Forward makes 127.0.0.1:RemotePort on the host reach localAddr on
	// the bastion.
	Forward(ctx context.Context, localAddr string) (Forward, error)
	// CleanStale removes work dirs (and nodes) of jobs other than keepJobID.
	CleanStale(ctx context.Context, keepJobID string) ([]StaleDir, error)
	// RemoveTempImages removes the daemon's temporary images of job jobID
	// (only) or of every other job, and returns their names.
	RemoveTempImages(ctx context.Context, jobID string, only bool) ([]string, error)
	// RemoveWorkDir deletes a work dir made by MakeWorkDir.
	RemoveWorkDir(ctx context.Context, dir string) error
	// Close ends the connection and every session on it.
	Close() error
}

var (
	_ Dialer = (*SSHDialer)(nil)
	_ Conn   = (*Client)(nil)
)

package orchestrator

import (
	"context"

	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// Dialer reaches the job's hosts. hostops.Dialer is the real one and
// hostops.FakeDialer the fake; Reach turns either into a Dialer.
type Dialer interface {
	Dial(ctx context.Context, h inventory.Host) (Conn, error)
	// Resolve says where h would be reached (after ~/.ssh/config) without
	// connecting.
	Resolve(h inventory.Host) (openssh.Target, error)
	// CheckKeys reads every key file the hosts name, so that one that
	// cannot be used is reported before any host is contacted.
	CheckKeys(hosts []inventory.Host) error
}

// Conn is one connection to one host: what a job and a plan do there.
type Conn interface {
	// Probe learns about the host without writing to it; askDocker asks
	// the docker CLI too (plan shows the daemon's version).
	Probe(ctx context.Context, askDocker bool) (hostops.Facts, error)
	// Run runs a command to completion and returns its stdout.
	Run(ctx context.Context, cmd openssh.Command) ([]byte, error)
	// CleanStale removes work dirs (and nodes) of jobs other than
	// keepJobID that are over, looking in every work-dir base of bases.
	CleanStale(ctx context.Context, keepJobID string, bases []string) ([]hostops.StaleDir, error)
	// RemoveTempImages removes the daemon's temporary images of job jobID
	// (only) or of every other job that is over (its work dir alive in
	// none of bases), and returns their names.
	RemoveTempImages(ctx context.Context, jobID string, only bool, bases []string) ([]string, error)
	// MakeWorkDir creates the job's fresh work dir in base and says where
	// the node binary with sha256 sha lives: in cacheDir (kept between
	// jobs) or, with cacheDir empty, in the work dir; and whether it is
	// there already. RemoveWorkDir deletes the dir, stopping a node still
	// running from it.
	MakeWorkDir(ctx context.Context, base, jobID, cacheDir, sha string) (hostops.WorkDir, error)
	// StartCached is MakeWorkDir with a cacheDir and, when the cache holds
	// the binary, Start of it with node's Args and Become, in one session:
	// the node's Process, nil on a miss.
	StartCached(ctx context.Context, base, jobID, cacheDir, sha string, node openssh.Command) (hostops.WorkDir, openssh.Process, error)
	RemoveWorkDir(ctx context.Context, dir string) error
	// StopNode stops a node still running from the work dir dir and
	// leaves the dir; it says whether one ran.
	StopNode(ctx context.Context, dir string) (bool, error)
	// NodeCached reports, without writing, whether the node cache
	// cacheDir holds the node binary with sha256 sha.
	NodeCached(ctx context.Context, cacheDir, sha string) (bool, error)
	// RemoveNodeCache deletes the node binaries kept in cacheDir.
	RemoveNodeCache(ctx context.Context, cacheDir string) ([]string, error)
	// Upload sends the node binary from the bastion and puts it at dest.
	Upload(ctx context.Context, dest string, bin hostops.Binary) error
	// Fetch has the host fetch the node binary from another host's node
	// at url and put it at dest.
	Fetch(ctx context.Context, dest, sha, url string) error
	// Start starts a long-running command with piped stdio.
	Start(ctx context.Context, cmd openssh.Command) (openssh.Process, error)
	// Forward makes 127.0.0.1:RemotePort on the host reach localAddr on
	// the bastion.
	Forward(ctx context.Context, localAddr string) (openssh.Forward, error)
	// Close ends the connection and every session on it.
	Close() error
}

// connDialer is a dialer whose connections have the concrete type C.
type connDialer[C Conn] interface {
	Dial(ctx context.Context, h inventory.Host) (C, error)
	Resolve(h inventory.Host) (openssh.Target, error)
	CheckKeys(hosts []inventory.Host) error
}

// Reach turns a dialer of concrete connections into a Dialer:
// orchestrator.Reach[*hostops.Conn](d).
func Reach[C Conn](d connDialer[C]) Dialer { return reach[C]{d: d} }

type reach[C Conn] struct{ d connDialer[C] }

func (r reach[C]) Dial(ctx context.Context, h inventory.Host) (Conn, error) {
	c, err := r.d.Dial(ctx, h)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (r reach[C]) Resolve(h inventory.Host) (openssh.Target, error) { return r.d.Resolve(h) }
func (r reach[C]) CheckKeys(hosts []inventory.Host) error           { return r.d.CheckKeys(hosts) }

var (
	_ Dialer = Reach[*hostops.Conn](&hostops.Dialer{})
	_ Dialer = Reach[*hostops.FakeConn](&hostops.FakeDialer{})
)

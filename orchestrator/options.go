package orchestrator

import (
	"time"
)

// Mode chooses how layers reach the hosts.
type Mode string

const (
	ModeP2P      Mode = "p2p"      // BitTorrent swarm seeded by the bastion
	ModeRegistry Mode = "registry" // every host runs docker pull at once (the baseline)
	ModeAuto     Mode = "auto"     // pick from the measured balance point
)

// Options is one job as the operator asked for it. The TUI and the run
// command both build an Options and hand it to Run.
type Options struct {
	// InventoryPath is the inventory file (layercast YAML or Ansible).
	InventoryPath string
	// Hosts selects hosts by name; Groups by group. Both empty: all hosts.
	Hosts  []string
	Groups []string
	// Image is the reference in the bastion's Docker daemon.
	Image string
	Mode  Mode
	// Tunnel reaches tracker and seeder through SSH remote forwarding.
	Tunnel bool
	// BastionAddr overrides the address nodes use for tracker and seeder.
	BastionAddr string
	// Concurrency bounds SSH work in flight; UploadConcurrency bounds uploads.
	Concurrency       int
	UploadConcurrency int
	// AcceptNewHostKeys trusts an unknown host key on first use.
	AcceptNewHostKeys bool
	// AnnounceInterval is the tracker's interval (default 1s).
	AnnounceInterval time.Duration
	// Timeout bounds the whole job; zero means none.
	Timeout time.Duration
	// StallTimeout fails a host that receives nothing for this long while
	// downloading; zero means never.
	StallTimeout time.Duration
	// CacheDir holds exported layers between jobs.
	CacheDir string
	// DryRun plans the job: connect, inspect, write nothing on any host.
	DryRun bool
}

package orchestrator

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/layercast/layercast/orchestrator/imagecache"
)

// Mode chooses how layers reach the hosts.
type Mode string

const (
	ModeP2P      Mode = "p2p"      // BitTorrent swarm seeded by the bastion
	ModeRegistry Mode = "registry" // every host runs docker pull at once (the baseline)
	ModeAuto     Mode = "auto"     // pick from the measured balance point
)

// Source is where the bastion takes the image from in p2p mode.
type Source string

const (
	// SourceDaemon exports the image from the bastion's Docker daemon
	// (pulling it there first when the daemon lacks it).
	SourceDaemon Source = "daemon"
	// SourceRegistry reads it from its registry into the bastion's cache,
	// with no Docker daemon: its compressed blobs travel as they are.
	SourceRegistry Source = "registry"
	// SourceAuto takes the daemon's copy when the bastion has a daemon
	// that holds the image, else the registry's.
	SourceAuto Source = "auto"
)

// Defaults of the options left zero.
const (
	DefaultSource = SourceAuto
	// DefaultCompress gzips (level 1) a daemon-source layer and sends the
	// gzip file when it saves at least 5 %: about 4 CPU-s per GB on the
	// bastion, once per layer (cached for later jobs), which halves a
	// real root filesystem; random data is sent as it is. Hosts' Docker
	// 20.10 loads gzip, not zstd.
	DefaultCompress          = imagecache.CompressAuto
	DefaultMode              = ModeP2P
	DefaultConcurrency       = 32
	DefaultUploadConcurrency = 8
)

// The deadlines of each phase on a host that the command line sets when
// the operator does not: they suit a 1 GB image over a slow link (10
// Mbit/s per host) to a loaded daemon, and catch a daemon or a host that
// hangs. An Options left zero has none of them (ConnectTimeout aside,
// which openssh defaults to 15s).
const (
	// DefaultConnectTimeout bounds TCP connect plus SSH handshake of one
	// hop, per attempt (three attempts).
	DefaultConnectTimeout = 15 * time.Second
	// DefaultSetupTimeout bounds each command that sets a host up (probe,
	// cleanup of ended jobs, work dir, node binary placement, its upload
	// once an upload slot is free or its fetch from another host): the 8
	// MB node binary takes about a minute at 1 Mbit/s.
	DefaultSetupTimeout = 5 * time.Minute
	// DefaultCheckTimeout bounds the node's start: it connects to the
	// daemon, clears what ended jobs left there and asks which layers the
	// daemon has; seconds on a healthy host.
	DefaultCheckTimeout = 2 * time.Minute
	// DefaultImportTimeout bounds the import once every layer is in: the
	// daemon writes a 1 GB image twice, a few minutes on a slow disk.
	DefaultImportTimeout = 10 * time.Minute
	// DefaultStallTimeout fails a downloading host that receives nothing
	// for this long while it has no peer or the whole swarm stopped.
	DefaultStallTimeout = 2 * time.Minute
)

// Options is one job as the operator asked for it. The TUI and the run
// command both build an Options and hand it to Run; zero fields take the
// defaults above.
type Options struct {
	// InventoryPath is the inventory file (layercast YAML or Ansible).
	InventoryPath string
	// Hosts selects hosts by name; Groups by group. Both empty: all hosts.
	Hosts  []string
	Groups []string
	// Image is the reference: in the bastion's Docker daemon, or in its
	// registry (Source).
	Image string
	Mode  Mode
	// Source is where the bastion takes the image from (p2p mode).
	Source Source
	// Compress is how daemon-source layers travel; registry-source
	// layers travel as the registry holds them.
	Compress imagecache.Compression
	// MaxRate caps the bastion's upload to the hosts in bytes/s (the
	// seeder's layer data and the node binaries it uploads); 0: none.
	MaxRate int64
	// HostMaxRate caps each host's swarm traffic in bytes/s, download and
	// upload each, where the inventory sets no max_rate; 0: none.
	HostMaxRate int64
	// Tunnel reaches tracker and seeder through SSH remote forwarding.
	Tunnel bool
	// BastionAddr overrides the address nodes use for tracker and seeder.
	BastionAddr string
	// Concurrency bounds the hosts in setup (connect to start) at once;
	// UploadConcurrency bounds the node binary uploads among them.
	Concurrency       int
	UploadConcurrency int
	// AcceptNewHostKeys trusts an unknown host key on first use.
	AcceptNewHostKeys bool
	// AnnounceInterval is the tracker's interval; zero lets the tracker
	// choose (1 s for small fleets, longer as the swarm grows).
	AnnounceInterval time.Duration
	// Timeout bounds the whole job; zero means none.
	Timeout time.Duration
	// StallTimeout fails a downloading host that receives nothing for this
	// long while it has no peer, or while no host of the job receives
	// anything either (deadlines.overdue); zero means never.
	StallTimeout time.Duration
	// ConnectTimeout bounds the SSH connect and handshake of each hop,
	// per attempt; zero means 15s.
	ConnectTimeout time.Duration
	// SetupTimeout bounds each command that sets a host up (probe,
	// cleanup, work dir, node binary); CheckTimeout the node's start until
	// it downloads; ImportTimeout the import once every layer is in
	// (registry mode: the check after the pull). Zero means never.
	SetupTimeout  time.Duration
	CheckTimeout  time.Duration
	ImportTimeout time.Duration
	// CacheDir holds exported layers between jobs.
	CacheDir string
	// NoNodeCache keeps no node binary on any host between jobs (the
	// inventory's node_cache: false does it per host).
	NoNodeCache bool
}

// WithDefaults returns o with every zero (or negative) field that has a
// default set to it.
func (o Options) WithDefaults() Options {
	if o.Mode == "" {
		o.Mode = DefaultMode
	}
	if o.Source == "" {
		o.Source = DefaultSource
	}
	if o.Compress == "" {
		o.Compress = DefaultCompress
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.UploadConcurrency <= 0 {
		o.UploadConcurrency = DefaultUploadConcurrency
	}
	return o
}

// Validate checks o as given, defaults not applied: a zero limit, which
// WithDefaults would replace, is an error here. Its messages name the
// command line's flags.
func (o Options) Validate() error {
	switch o.Mode {
	case ModeP2P, ModeRegistry, ModeAuto:
	default:
		return fmt.Errorf("--mode %q: use p2p, registry or auto", o.Mode)
	}
	switch o.Source {
	case SourceAuto, SourceDaemon, SourceRegistry:
	default:
		return fmt.Errorf("--source %q: use daemon, registry or auto", o.Source)
	}
	if _, err := imagecache.ParseCompression(string(o.Compress)); err != nil {
		return err
	}
	if o.MaxRate < 0 || o.HostMaxRate < 0 {
		return errors.New("--max-rate and --host-max-rate must not be negative")
	}
	if o.Concurrency < 1 || o.UploadConcurrency < 1 {
		return errors.New("--concurrency and --upload-concurrency must be at least 1")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--timeout", o.Timeout}, {"--stall-timeout", o.StallTimeout}, {"--connect-timeout", o.ConnectTimeout},
		{"--setup-timeout", o.SetupTimeout}, {"--check-timeout", o.CheckTimeout}, {"--import-timeout", o.ImportTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("%s %s is negative: give a duration such as 5m, or 0 for none", d.flag, d.v)
		}
	}
	if o.Image != "" {
		if err := checkImageRef(o.Image, o.Mode); err != nil {
			return err
		}
	}
	return nil
}

// checkImageRef refuses a reference the daemons would refuse, before
// anything is contacted.
func checkImageRef(image string, mode Mode) error {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return fmt.Errorf("invalid image reference %q: %v; write [registry/]name[:tag][@sha256:digest], the name in lower case", image, err)
	}
	// The parser takes a first component in upper case for a registry
	// host ("UPPER/app"); no registry is named so.
	if name := named.Name(); strings.ToLower(name) != name {
		return fmt.Errorf("invalid image reference %q: the name must be lower case (%s)", image, strings.ToLower(reference.FamiliarName(named)))
	}
	_, tagged := named.(reference.Tagged)
	if _, digested := named.(reference.Digested); digested && !tagged && mode == ModeP2P {
		return fmt.Errorf("image reference %q has a digest and no tag: p2p mode tags the image it brings; add a tag (name:tag@sha256:...) or use --mode registry", image)
	}
	return nil
}

// Package jobspec is the contract between the bastion and the node binary,
// defined once for both sides: the job spec the node reads on stdin, the
// control lines that follow it, the events the node writes on stdout, and
// the host-side names and periods both must agree on (work dir, pid file,
// temporary image names, chain IDs, heartbeat and progress periods).
//
// The operator side imports it (and may import other nodebin packages);
// nothing in nodebin imports the operator side.
//
// The stream on the node's stdin is newline-delimited JSON: the first line is
// a Spec, every later line is a Control. The node's stdout carries one Event
// per line and nothing else; logs go to stderr.
package jobspec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"
)

// Version is bumped whenever Spec, Control or Event change incompatibly.
const Version = 2

// MaxLine bounds one line on either stream; a longer line is an error, not a
// reason to allocate without limit.
const MaxLine = 4 << 20

// Spec is everything a node needs for one job.
type Spec struct {
	Version int    `json:"version"`
	JobID   string `json:"job_id"`
	// Host is the inventory name of the host, used in logs only.
	Host string `json:"host"`

	// Image is the reference to tag, e.g. "registry.lab:5000/app:v1".
	Image string `json:"image"`
	// ImageID is the digest of the image config ("sha256:..."); the node
	// checks that the daemon reports this ID after the import.
	ImageID string `json:"image_id"`
	// Config is the raw image config JSON; its sha256 is ImageID.
	Config []byte `json:"config"`
	// Layers in image order (bottom first).
	Layers []Layer `json:"layers"`

	// Mode is "p2p" (default) or "registry" (plain docker pull of Image).
	Mode string `json:"mode,omitempty"`
	// RegistryAuth is the base64 X-Registry-Auth value for registry mode.
	// It travels on stdin only, never in arguments or on disk.
	RegistryAuth string `json:"registry_auth,omitempty"`

	// DockerHost overrides DOCKER_HOST for the node's Docker client.
	DockerHost string `json:"docker_host,omitempty"`

	// Runtime is where the image goes: RuntimeDocker (the default when
	// empty) or RuntimeContainerd (p2p mode only).
	Runtime string `json:"runtime,omitempty"`
	// ContainerdAddress is containerd's socket (a path or unix:// URL);
	// empty means DefaultContainerdAddress.
	ContainerdAddress string `json:"containerd_address,omitempty"`
	// ContainerdNamespace is the namespace the image goes into; empty
	// means DefaultContainerdNamespace, the kubelet's.
	ContainerdNamespace string `json:"containerd_namespace,omitempty"`
	// ContainerdSnapshotter is the snapshotter the image is unpacked for;
	// empty means overlayfs, or native where overlayfs did not load.
	ContainerdSnapshotter string `json:"containerd_snapshotter,omitempty"`

	// Swarm.
	Announce string   `json:"announce"`          // tracker announce URL, token included
	Seeders  []string `json:"seeders,omitempty"` // host:port of the bastion's seeder, added as peers directly
	// AllowedIPs are the only addresses that may be peers (the job's
	// hosts and the bastion): addresses and ranges, see IPSet.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
	ListenPort int      `json:"listen_port,omitempty"` // 0: pick a free port
	// PublicIP is this host's address as peers should dial it; sent to the
	// tracker as ip=. Empty: the tracker uses the announce's source address.
	PublicIP string `json:"public_ip,omitempty"`
	// MaxRate caps the node's swarm traffic in bytes/s, its download and
	// its upload each; zero is unlimited.
	MaxRate int64 `json:"max_rate,omitempty"`

	// WorkDir is the job's temp dir on the host; the node removes it on exit.
	WorkDir string `json:"work_dir"`
	// WorkBases are the dirs this host's jobs make their work dirs in (the
	// bastion scans them all); the node looks there for other jobs' dirs
	// before it takes their temporary images for left over.
	WorkBases []string `json:"work_bases,omitempty"`
	// Heartbeat: the node exits on its own when no Control line arrived for
	// this long (the bastion died). Zero means 15s.
	Heartbeat Duration `json:"heartbeat,omitempty"`
	// ProgressEvery is the event period; zero means 250ms.
	ProgressEvery Duration `json:"progress_every,omitempty"`

	// Handoff, when set, is the node binary this node serves to the job's
	// other hosts (AllowedIPs) while it runs; it reports where with an
	// EventServing.
	Handoff *Handoff `json:"handoff,omitempty"`
	// MarkUsed lists the node cache's files this node runs from (the node
	// binary and its compressed twin) when the job found them cached: the
	// node sets their modification time to now as it starts, the mark by
	// which the cache's pruning keeps the binaries jobs still use. The
	// node does it rather than one more program in the bastion's setup
	// command. A file with a stamp (CacheStampSuffix) that matched the file
	// before the touch has its stamp renewed after it, so the next job's
	// check still trusts the file without hashing it.
	MarkUsed []string `json:"mark_used,omitempty"`
}

// A node cache's stamp: the file P+CacheStampSuffix beside a verified node
// binary P holds one line, P's `stat -c CacheStampFormat` taken when P was
// last known to hash to its sha256 (at install, or after a job hashed it).
// A job trusts a cached binary whose stat still reads the same without
// hashing it again: device, inode, size and the status-change time, which
// any write, rename or touch of P moves and which a user cannot set back.
// Hashing the 21 MB binary was 8 % of the lab's CPU while 40 hosts set up.
// The node, which sets P's times (MarkUsed), renews the stamp; in Go it
// formats the same fields (see nodebin/node).
const (
	CacheStampSuffix = ".stamp"
	CacheStampFormat = "%d %i %s %.9Z"
)

// Handoff is a compressed node binary on the host that the node hands on.
type Handoff struct {
	// Path is the gzip file on the host.
	Path string `json:"path"`
	// Name is the URL path it is served at: HandoffName(sha256).
	Name string `json:"name"`
}

// Container runtimes a node imports into (Spec.Runtime).
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
)

// Where containerd is on a Kubernetes node unless the spec says otherwise.
const (
	DefaultContainerdAddress   = "/run/containerd/containerd.sock"
	DefaultContainerdNamespace = "k8s.io"
)

// RuntimeOf returns the spec's runtime with the default applied.
func (s *Spec) RuntimeOf() string {
	if s.Runtime == "" {
		return RuntimeDocker
	}
	return s.Runtime
}

// Layer is one image layer as it travels through the swarm.
type Layer struct {
	// DiffID is the sha256 of the uncompressed layer tar (config rootfs.diff_ids).
	DiffID string `json:"diff_id"`
	// ChainID identifies the layer with all its parents in the daemon.
	ChainID string `json:"chain_id"`
	// Digest is the sha256 of the file moved through the swarm. It equals
	// DiffID unless the file is compressed.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// MediaType tells how the file is compressed: MediaTar or
	// MediaTarGzip.
	MediaType string `json:"media_type,omitempty"`
	// UnpackedSize is the size of the layer tar once decompressed: what
	// the runtime stores. Zero means Size (an uncompressed file).
	UnpackedSize int64 `json:"unpacked_size,omitempty"`
	// Torrent is the bencoded metainfo of the layer's torrent. When it is
	// empty the node waits for a ControlTorrents line, which names other
	// hosts to fetch the metainfo from or carries it, and checks what it
	// gets against InfoHash.
	Torrent []byte `json:"torrent,omitempty"`
	// InfoHash is the torrent's infohash, 40 hex digits: the SHA-1 of the
	// info dictionary, which holds the piece hashes.
	InfoHash string `json:"info_hash,omitempty"`
}

// LayerTorrent is one layer's torrent metainfo, as ControlTorrents carries
// it and as a node serves it to the job's other hosts (TorrentsName).
type LayerTorrent struct {
	Digest  string `json:"digest"`
	Torrent []byte `json:"torrent"`
}

// TorrentsName is the URL path a node serves the torrents of the image
// with this ID at, on the server that hands the node binary on: a JSON
// array of LayerTorrent.
func TorrentsName(imageID string) string {
	return "torrents-" + strings.TrimPrefix(imageID, "sha256:") + ".json"
}

// Layer file media types (Layer.MediaType).
const (
	MediaTar     = "tar"
	MediaTarGzip = "tar+gzip"
)

// Unpacked is the bytes the runtime stores for the layer.
func (l Layer) Unpacked() int64 { return max(l.UnpackedSize, l.Size) }

// ControlKind is what the bastion tells a running node.
type ControlKind string

const (
	// ControlHeartbeat keeps the node alive; sent about once a second.
	ControlHeartbeat ControlKind = "heartbeat"
	// ControlStop ends the job: stop seeding, clean up, exit.
	ControlStop ControlKind = "stop"
	// ControlTorrents gives a node whose spec's layers lack their torrents
	// where to get them: From, URLs of other hosts that serve them (the
	// node tries them in order and says EventNeedTorrents when none
	// served them), or Torrents, the metainfo itself.
	ControlTorrents ControlKind = "torrents"
)

// Control is one line the bastion writes after the Spec.
type Control struct {
	Kind     ControlKind    `json:"kind"`
	From     []string       `json:"from,omitempty"`
	Torrents []LayerTorrent `json:"torrents,omitempty"`
}

// State is where a node is in its job.
type State string

const (
	StateChecking    State = "checking"    // asking the daemon which layers it has
	StateDownloading State = "downloading" // fetching missing layers from the swarm
	StateImporting   State = "importing"   // loading into the daemon and checking the result
	StateDone        State = "done"        // image present and verified; seeding until stopped
	StateFailed      State = "failed"
)

// EventKind says which fields of an Event are set.
type EventKind string

const (
	EventState    EventKind = "state"    // State (and Message)
	EventProgress EventKind = "progress" // Progress
	EventLog      EventKind = "log"      // Message
	EventError    EventKind = "error"    // Message: the job failed on this host; State is failed
	EventExit     EventKind = "exit"     // last line: the node cleaned up and is exiting
	EventServing  EventKind = "serving"  // Addr: the node hands its binary on at http://Addr/Handoff.Name
	EventAlive    EventKind = "alive"    // nothing new: the node runs (sent when quiet for ReportEvery)
	// EventTorrents: the node has every layer's torrent; with Addr set it
	// serves them at http://Addr/TorrentsName(ImageID).
	EventTorrents EventKind = "torrents"
	// EventNeedTorrents: no host named in ControlTorrents.From served the
	// torrents (Message says why); the node waits for another
	// ControlTorrents.
	EventNeedTorrents EventKind = "need_torrents"
)

// Event is one line on the node's stdout.
type Event struct {
	Time     time.Time `json:"t"`
	Kind     EventKind `json:"kind"`
	State    State     `json:"state,omitempty"`
	Message  string    `json:"msg,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	// ImageID is set on the state event for StateDone.
	ImageID string `json:"image_id,omitempty"`
	// Addr is host:port, on the EventServing and EventTorrents events.
	Addr string `json:"addr,omitempty"`
}

// Progress is a node's whole transfer at one instant.
type Progress struct {
	Layers []LayerProgress `json:"layers"`
	// Peers is the number of hosts (distinct IPs) connected over all
	// torrents: the bastion's seeder counts as one.
	Peers int `json:"peers"`
	// Rate is the download rate in bytes/s over the last period.
	Rate float64 `json:"rate"`
	// FromPeers and FromSeeder split the useful bytes received by origin.
	FromPeers  int64 `json:"from_peers"`
	FromSeeder int64 `json:"from_seeder"`
	// Uploaded is the number of bytes this node served to others.
	Uploaded int64 `json:"uploaded"`
}

// LayerProgress is one layer's transfer.
type LayerProgress struct {
	Digest  string `json:"digest"`
	Done    int64  `json:"done"`
	Total   int64  `json:"total"`
	Skipped bool   `json:"skipped,omitempty"` // the daemon already had it
}

var (
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	infoHashRE = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// ValidDigest reports whether d is "sha256:" followed by 64 lowercase hex digits.
func ValidDigest(d string) bool { return digestRE.MatchString(d) }

// Validate checks a spec before the node acts on it.
func (s *Spec) Validate() error {
	var errs []error
	if s.Version != Version {
		errs = append(errs, fmt.Errorf("spec version %d, node speaks %d", s.Version, Version))
	}
	if s.JobID == "" {
		errs = append(errs, errors.New("job_id is empty"))
	}
	if s.Image == "" {
		errs = append(errs, errors.New("image is empty"))
	}
	if s.WorkDir == "" {
		errs = append(errs, errors.New("work_dir is empty"))
	}
	switch s.Mode {
	case "", "p2p":
		if !ValidDigest(s.ImageID) {
			errs = append(errs, fmt.Errorf("image_id %q is not a sha256 digest", s.ImageID))
		}
		if len(s.Config) == 0 {
			errs = append(errs, errors.New("config is empty"))
		}
		if len(s.Layers) == 0 {
			errs = append(errs, errors.New("image has no layers"))
		}
		if s.Announce == "" {
			errs = append(errs, errors.New("announce is empty"))
		}
		for i, l := range s.Layers {
			for name, d := range map[string]string{"diff_id": l.DiffID, "chain_id": l.ChainID, "digest": l.Digest} {
				if !ValidDigest(d) {
					errs = append(errs, fmt.Errorf("layer %d: %s %q is not a sha256 digest", i, name, d))
				}
			}
			if l.Size <= 0 {
				errs = append(errs, fmt.Errorf("layer %d: size %d", i, l.Size))
			}
			if len(l.Torrent) == 0 && !infoHashRE.MatchString(l.InfoHash) {
				errs = append(errs, fmt.Errorf("layer %d: no torrent, and info_hash %q is not 40 hex digits", i, l.InfoHash))
			}
			switch l.MediaType {
			case "", MediaTar, MediaTarGzip:
			default:
				errs = append(errs, fmt.Errorf("layer %d: media_type %q: want %s or %s", i, l.MediaType, MediaTar, MediaTarGzip))
			}
			if l.UnpackedSize < 0 {
				errs = append(errs, fmt.Errorf("layer %d: unpacked_size %d", i, l.UnpackedSize))
			}
		}
	case "registry":
	default:
		errs = append(errs, fmt.Errorf("mode %q: want p2p or registry", s.Mode))
	}
	if s.MaxRate < 0 {
		errs = append(errs, fmt.Errorf("max_rate %d is negative", s.MaxRate))
	}
	for _, p := range s.MarkUsed {
		if !path.IsAbs(p) || path.Clean(p) != p {
			errs = append(errs, fmt.Errorf("mark_used %q is not an absolute, clean path", p))
		}
	}
	errs = append(errs, s.validateRuntime())
	return errors.Join(errs...)
}

// containerd's rule for namespace names.
var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

func (s *Spec) validateRuntime() error {
	var errs []error
	switch s.Runtime {
	case "", RuntimeDocker:
		if s.ContainerdAddress != "" || s.ContainerdNamespace != "" || s.ContainerdSnapshotter != "" {
			errs = append(errs, errors.New("containerd_* set, but runtime is docker"))
		}
	case RuntimeContainerd:
		if s.Mode == "registry" {
			errs = append(errs, errors.New("registry mode pulls through docker; runtime containerd takes p2p mode only"))
		}
		if s.DockerHost != "" {
			errs = append(errs, errors.New("docker_host set, but runtime is containerd"))
		}
		if a := strings.TrimPrefix(s.ContainerdAddress, "unix://"); a != "" && !strings.HasPrefix(a, "/") {
			errs = append(errs, fmt.Errorf("containerd_address %q: want an absolute socket path or unix:///path", s.ContainerdAddress))
		}
		if n := s.ContainerdNamespace; n != "" && (len(n) > 76 || !namespaceRE.MatchString(n)) {
			errs = append(errs, fmt.Errorf("containerd_namespace %q is not a containerd namespace name", n))
		}
		if n := s.ContainerdSnapshotter; n != "" && !namespaceRE.MatchString(n) {
			errs = append(errs, fmt.Errorf("containerd_snapshotter %q is not a snapshotter name", n))
		}
	default:
		errs = append(errs, fmt.Errorf("runtime %q: want %s or %s", s.Runtime, RuntimeDocker, RuntimeContainerd))
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration that reads and writes as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Or returns d, or def when d is zero.
func (d Duration) Or(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}

// Encoder writes values as JSON lines.
type Encoder struct{ enc *json.Encoder }

func NewEncoder(w io.Writer) *Encoder { return &Encoder{enc: json.NewEncoder(w)} }

// Encode writes v and a newline.
func (e *Encoder) Encode(v any) error { return e.enc.Encode(v) }

// Decoder reads JSON lines of bounded length.
type Decoder struct{ sc *bufio.Scanner }

func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLine)
	return &Decoder{sc: sc}
}

// Decode reads the next line into v. It returns io.EOF at the end.
func (d *Decoder) Decode(v any) error {
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return fmt.Errorf("read line: %w", err)
		}
		return io.EOF
	}
	if err := json.Unmarshal(d.sc.Bytes(), v); err != nil {
		return fmt.Errorf("decode line: %w", err)
	}
	return nil
}

// ReadSpec reads and validates the first line of the node's stdin.
func ReadSpec(d *Decoder) (*Spec, error) {
	var s Spec
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("read job spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("invalid job spec: %w", err)
	}
	return &s, nil
}

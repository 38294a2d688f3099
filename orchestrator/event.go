package orchestrator

import (
	"time"

	"github.com/layercast/layercast/orchestrator/seed"
)

// HostState is where one host is in a job, as the operator sees it.
type HostState string

const (
	HostPending     HostState = "pending"
	HostConnecting  HostState = "connecting"
	HostUploading   HostState = "uploading"
	HostChecking    HostState = "checking"
	HostDownloading HostState = "downloading"
	HostImporting   HostState = "importing"
	HostDone        HostState = "done"
	HostFailed      HostState = "failed"
	HostCancelled   HostState = "cancelled"
)

// Terminal reports whether a host in state s has finished its part of the job.
func (s HostState) Terminal() bool {
	return s == HostDone || s == HostFailed || s == HostCancelled
}

// EventKind says which fields of an Event are set.
type EventKind string

const (
	// EventJobStarted: Job is set. First event of every job.
	EventJobStarted EventKind = "job_started"
	// EventStep: Message is the title of the job step that starts.
	EventStep EventKind = "step"
	// EventHostState: Host, State, and Message for a failure reason.
	EventHostState EventKind = "host_state"
	// EventHostProgress: Host and Progress.
	EventHostProgress EventKind = "host_progress"
	// EventHostInfo: Host and Info; what the probe learned of the host.
	EventHostInfo EventKind = "host_info"
	// EventHostLog: Host and Message; a log line from the host's node.
	EventHostLog EventKind = "host_log"
	// EventSeeder: Seeder; the bastion's own transfer, about twice a second.
	EventSeeder EventKind = "seeder"
	// EventTeardown: Host (empty for the bastion) and Message; one per host
	// when its teardown finished.
	EventTeardown EventKind = "teardown"
	// EventJobDone: Report is set. Last event of every job.
	EventJobDone EventKind = "job_done"
)

// Event is what the engine tells its consumers: the TUI, the plain printer
// and the JSON printer all read the same stream.
type Event struct {
	Time     time.Time     `json:"t"`
	Kind     EventKind     `json:"kind"`
	Host     string        `json:"host,omitempty"`
	State    HostState     `json:"state,omitempty"`
	Message  string        `json:"msg,omitempty"`
	Progress *HostProgress `json:"progress,omitempty"`
	Seeder   *SeederStats  `json:"seeder,omitempty"`
	Info     *HostInfo     `json:"info,omitempty"`
	Job      *JobInfo      `json:"job,omitempty"`
	Report   *Report       `json:"report,omitempty"`
}

// Sink receives events. Emit must not block for long: the engine calls it
// from its own goroutines.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

func (f SinkFunc) Emit(e Event) { f(e) }

// JobInfo describes a job when it starts.
type JobInfo struct {
	ID    string `json:"id"`
	Image string `json:"image"`
	// ImageID is the image's when the job has one image (the hosts'
	// platforms need one); Platforms lists each platform's.
	ImageID string `json:"image_id,omitempty"`
	Mode    string `json:"mode"`
	// Source is where the bastion took the image from: "daemon" or
	// "registry" (p2p mode).
	Source string `json:"source,omitempty"`
	// Size is the bytes of the layer files the bastion serves, each once
	// (over every platform), as they travel (compressed or not).
	Size   int64       `json:"size"`
	Layers []LayerInfo `json:"layers,omitempty"`
	// Platforms are the images the job serves, one per platform.
	Platforms []PlatformImage `json:"platforms,omitempty"`
	// MaxRate is the cap on the bastion's upload in bytes/s; 0 for none.
	MaxRate int64    `json:"max_rate,omitempty"`
	Hosts   []string `json:"hosts"`
	// Ignored lists, one line each, what the inventory holds that
	// layercast does not use (Ansible variables and options).
	Ignored []string `json:"ignored,omitempty"`
}

// LayerInfo is one layer file of the job's image.
type LayerInfo struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// MediaType is "tar" or "tar+gzip"; Unpacked the tar's size when the
	// file is compressed.
	MediaType string `json:"media_type,omitempty"`
	Unpacked  int64  `json:"unpacked,omitempty"`
}

// PlatformImage is the job's image for one platform.
type PlatformImage struct {
	Platform string `json:"platform"`
	ImageID  string `json:"image_id"`
	Size     int64  `json:"size"`     // its layer files as they travel
	Unpacked int64  `json:"unpacked"` // its layer tars
}

// HostInfo is what the probe learned of a host.
type HostInfo struct {
	Arch string `json:"arch"`
	// Runtime is where the image goes: "docker" or "containerd".
	Runtime string `json:"runtime"`
	// Namespace is containerd's namespace the image goes into.
	Namespace string `json:"namespace,omitempty"`
	// Platform is the host's, from its probe ("linux/arm64"); ImageID the
	// image it gets for it (p2p mode).
	Platform string `json:"platform,omitempty"`
	ImageID  string `json:"image_id,omitempty"`
	// MaxRate is the cap on the host's swarm traffic in bytes/s; 0 none.
	MaxRate int64 `json:"max_rate,omitempty"`
}

// HostProgress is one host's transfer at one instant.
type HostProgress struct {
	Layers     []LayerProgress `json:"layers"`
	Done       int64           `json:"done"`  // bytes of the image present on the host, skipped layers included
	Total      int64           `json:"total"` // image size
	Needed     int64           `json:"needed"`
	Rate       float64         `json:"rate"` // bytes/s
	Peers      int             `json:"peers"`
	FromPeers  int64           `json:"from_peers"`
	FromSeeder int64           `json:"from_seeder"`
	Uploaded   int64           `json:"uploaded"`
}

// LayerProgress is one layer on one host.
type LayerProgress struct {
	Digest  string `json:"digest"`
	Done    int64  `json:"done"`
	Total   int64  `json:"total"`
	Skipped bool   `json:"skipped,omitempty"`
}

// SeederStats is the bastion's side of a job.
type SeederStats struct {
	Uploaded int64   `json:"uploaded"` // bytes the bastion sent to nodes
	Rate     float64 `json:"rate"`     // bytes/s
	Peers    int     `json:"peers"`
}

// Report is the outcome of a job: what the summary table, the JSON report and
// --retry-failed read.
type Report struct {
	JobID   string `json:"job_id"`
	Image   string `json:"image"`
	ImageID string `json:"image_id,omitempty"`
	Mode    string `json:"mode"`
	Source  string `json:"source,omitempty"`
	Size    int64  `json:"size"`
	// Platforms are the images the job served, one per platform.
	Platforms []PlatformImage `json:"platforms,omitempty"`
	Started   time.Time       `json:"started"`
	Duration  time.Duration   `json:"duration_ns"`
	Egress    int64           `json:"bastion_egress"` // bytes the bastion's seeder sent
	// Resent is the part of Egress the seeder had sent before, by why it
	// went again.
	Resent seed.Resends `json:"bastion_resent"`
	// Missing is the bytes of the layers at least one host lacked: what
	// the bastion had to send at least once. Egress ÷ Missing is how many
	// times over it sent them.
	Missing int64 `json:"missing"`
	// NodeBinary is how the node binary reached the hosts.
	NodeBinary NodeBinaryReport `json:"node_binary"`
	// Torrents is how the layers' torrents (their piece hashes) reached
	// the hosts whose spec left them out.
	Torrents TorrentsReport `json:"torrents"`
	// Bastion is what layercast's own process used on the bastion during
	// the job.
	Bastion   BastionUse `json:"bastion"`
	Cancelled bool       `json:"cancelled,omitempty"` // the operator stopped the job
	TimedOut  bool       `json:"timed_out,omitempty"` // the job's --timeout ran out
	// Unverified, when set, says why the image ID of some hosts that ended
	// done was not checked against the bastion's (registry mode without
	// the image on the bastion, or hosts of another CPU): those hosts
	// have what the registry served under the name. Their HostResult
	// has Unverified set.
	Unverified string       `json:"unverified,omitempty"`
	Hosts      []HostResult `json:"hosts"`
}

// HostResult is one host's line in the report.
type HostResult struct {
	Host          string        `json:"host"`
	State         HostState     `json:"state"` // done, failed or cancelled
	Error         string        `json:"error,omitempty"`
	Duration      time.Duration `json:"duration_ns"`
	FromPeers     int64         `json:"from_peers"`
	FromSeeder    int64         `json:"from_seeder"`
	LayersSkipped int           `json:"layers_skipped"`
	ImageID       string        `json:"image_id,omitempty"`
	// Runtime is where the image went: "docker" or "containerd".
	Runtime string `json:"runtime,omitempty"`
	// NodeFrom is where the host's node binary came from: "cache", the
	// name of the host it was fetched from, or "bastion".
	NodeFrom string `json:"node_from,omitempty"`
	// Unverified: the host's image ID was not checked against the
	// bastion's (see Report.Unverified).
	Unverified bool `json:"unverified,omitempty"`
}

// NodeBinaryReport counts how the hosts got the node binary. A host set up
// again after a lost connection counts once, by where its binary came from
// the last time; BastionBytes counts every upload.
type NodeBinaryReport struct {
	FromCache   int `json:"from_cache"`   // the host's node cache held it
	FromPeers   int `json:"from_peers"`   // fetched from another host's node
	FromBastion int `json:"from_bastion"` // uploaded by the bastion
	// BastionBytes is what the uploads put on the bastion's link
	// (compressed binary, SSH overhead not counted).
	BastionBytes int64 `json:"bastion_bytes"`
}

// TorrentsReport counts how the hosts got the layers' torrents: from
// another host, or in a line from the bastion (a host set up again counts
// once, by its last source). BastionBytes is the torrents' bytes in the
// bastion's lines.
type TorrentsReport struct {
	FromPeers    int   `json:"from_peers"`
	FromBastion  int   `json:"from_bastion"`
	BastionBytes int64 `json:"bastion_bytes"`
}

// BastionUse is what the bastion's layercast process used during a job,
// from the start of Engine.Run (before the image is prepared) to the
// report, teardown included. Peaks are sampled every 250 ms (and once at
// each end), so a burst shorter than that may be missed. The figures read
// from /proc (PeakRSS, HWM, PeakOpenFiles, PeakThreads) are zero where
// there is no /proc (not Linux).
type BastionUse struct {
	// Hosts is the job's host count: divide a peak by it for the cost of
	// one host.
	Hosts int `json:"hosts"`
	// PeakRSS is the largest resident set size sampled, in bytes (VmRSS).
	PeakRSS int64 `json:"peak_rss"`
	// HWM is the kernel's peak resident set size (VmHWM) at the job's end,
	// in bytes: no sample can miss it, but it covers the process's whole
	// life, jobs and console before this one included.
	HWM int64 `json:"rss_hwm"`
	// PeakHeap is the largest Go heap sampled, in bytes: the heap's
	// objects, live or not yet swept (runtime/metrics
	// /memory/classes/heap/objects:bytes). RSS adds stacks, the runtime's
	// own memory, heap space kept for reuse and the binary.
	PeakHeap int64 `json:"peak_heap"`
	// PeakGoroutines is the largest goroutine count sampled.
	PeakGoroutines int `json:"peak_goroutines"`
	// PeakOpenFiles is the largest count of open file descriptors sampled
	// (sockets, pipes and files; the entries of /proc/self/fd).
	PeakOpenFiles int `json:"peak_open_files"`
	// PeakThreads is the largest count of OS threads sampled.
	PeakThreads int `json:"peak_threads"`
	// CPUSeconds is the user and system CPU the process used during the
	// job (getrusage), over every core.
	CPUSeconds float64 `json:"cpu_seconds"`
	// Samples is how many times the process was read.
	Samples int `json:"samples"`
}

// Failed lists the hosts that did not end done.
func (r *Report) Failed() []string {
	var out []string
	for _, h := range r.Hosts {
		if h.State != HostDone {
			out = append(out, h.Host)
		}
	}
	return out
}

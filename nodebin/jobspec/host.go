package jobspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// What both sides of SSH must agree on besides the streams: where a job
// lives on a host, how its node can be found and stopped, how its
// temporary images are named, how layers are identified in the daemon,
// and how often the two sides speak.

// WorkDirPrefix starts the name of a job's temp dir in /tmp, the first
// work-dir base a host is given; the job ID follows. A host whose /tmp is
// mounted noexec gets its dir under another base (Spec.WorkBases), always
// named WorkDirName(job). The bastion makes and removes these dirs and
// looks for stale ones by that name in every base.
const WorkDirPrefix = "/tmp/" + WorkDirNamePrefix

// WorkDirNamePrefix starts the name of every job's work dir.
const WorkDirNamePrefix = "layercast-"

// WorkDirName is the name of job id's work dir, in whatever base.
func WorkDirName(jobID string) string { return WorkDirNamePrefix + jobID }

// DefaultWorkBases are the dirs a host's work dirs go into unless the
// inventory names one, tried in order; the login user's cache dir
// ($XDG_CACHE_HOME, else ~/.cache) comes after them.
func DefaultWorkBases() []string { return []string{"/tmp", "/var/tmp"} }

var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidJobID reports whether id can name a work dir: letters, digits, '_',
// '.', '-', at most 64, not starting with a punctuation mark.
func ValidJobID(id string) bool { return jobIDRE.MatchString(id) }

// WorkDir is the temp dir of job id on a host.
func WorkDir(jobID string) string { return WorkDirPrefix + jobID }

// PidFile is the file in the work dir where the node writes its pid, so
// that the bastion can stop a node its job left running.
const PidFile = "node.pid"

// LockFile is the file in the work dir that the node holds locked
// (flock, exclusive) for as long as it runs, and touches every AliveEvery:
// another job's cleanup takes a work dir for one whose job is over only
// when it can take its lock, or when the lock was not touched for
// AliveWithin (the node hangs: frozen, or too starved to run, past the
// point where it would have given up its job by itself).
const LockFile = "node.lock"

// LoadingFile is the file in the work dir that names, one per line, the
// references a load into the daemon creates, from the moment the node has
// sent the load's whole archive until the daemon answers. The daemon
// finishes such a load whatever becomes of the node, so a node killed in
// between leaves the file behind, and the bastion's cleanup waits up to
// LoadGrace for those images before it removes the job's temporary ones.
const LoadingFile = "loading"

// LoadGrace bounds how long a daemon that has a load's whole archive may
// take to answer it: the node waits that long for the answer of a load it
// interrupts, and the bastion as long for the images of a load its killed
// node left (LoadingFile).
const LoadGrace = 30 * time.Second

// AliveEvery is how often a node touches its lock file; AliveWithin is how
// long a node that stopped touching it still counts as alive: twice the
// heartbeat timeout after which a node whose bastion is silent exits.
const (
	AliveEvery  = 5 * time.Second
	AliveWithin = 2 * DefaultHeartbeat
)

// NodeJobFlag is the node binary's argument that names its job
// (NodeJobFlag, jobID): it marks the process as the node of that job, so
// that a cleanup stops only a node of the job it cleans up.
const NodeJobFlag = "--job"

// HandoffName is the URL path a node serves the compressed node binary
// with this sha256 (of the uncompressed binary) at.
func HandoffName(sha256Hex string) string { return "layercast-node-" + sha256Hex + ".gz" }

// TempRepo is the repository of the temporary prefix images a node loads
// while later layers still download. They are removed when the job ends;
// any left after a killed node are named TempRef(job, n).
const TempRepo = "layercast-tmp"

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// TempRef is the reference of the temporary image holding the first n
// layers of job's image: TempRepo:j<job>-<n>, a valid tag for any job ID.
func TempRef(job string, n int) string {
	j := tagUnsafe.ReplaceAllString(job, "_")
	suffix := fmt.Sprintf("-%d", n)
	if room := 127 - len(suffix); len(j) > room {
		j = j[:room]
	}
	return TempRepo + ":j" + j + suffix
}

// TempRefPrefix starts every TempRef of job (a job ID short enough not to
// be cut, as every ID the bastion makes is).
func TempRefPrefix(job string) string {
	return TempRepo + ":j" + tagUnsafe.ReplaceAllString(job, "_") + "-"
}

// AnyTempRefPrefix starts the TempRef of every job.
const AnyTempRefPrefix = TempRepo + ":j"

// ChainID extends the chain ID of the layers below (parent; "" for the
// first layer) by one diff ID, as the daemon computes it:
// chain(0) = diff(0), chain(n) = sha256(chain(n-1) + " " + diff(n)).
func ChainID(parent, diffID string) string {
	if parent == "" {
		return diffID
	}
	sum := sha256.Sum256([]byte(parent + " " + diffID))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ChainIDs returns the chain ID of every prefix of diffIDs.
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	chain := ""
	for i, d := range diffIDs {
		chain = ChainID(chain, d)
		out[i] = chain
	}
	return out
}

// ChunkSize is the block a node requests from its peers and the bastion's
// seeder: the seeder accepts requests of up to twice this. 256 KiB keeps
// the messages, storage writes and request updates per byte few (node CPU
// per GB received: 9.7 at 64 KiB, 7.0 at 256 KiB in the swarm benchmark).
const ChunkSize = 256 << 10

// Periods of the protocol.
const (
	// HeartbeatEvery is how often the bastion sends ControlHeartbeat: six
	// times within the node's DefaultHeartbeat. More often buys nothing,
	// since TCP delivers the lines in order and a link that holds one back
	// for a minute holds back all of them; and each costs the bastion's
	// link a packet per host (about 130 bytes with SSH and TCP framing).
	// Sent every second, they were a sixth of a 1 Mbit/s bastion link at
	// 140 lab hosts (docs/SCALE.md).
	HeartbeatEvery = DefaultHeartbeat / 6
	// DefaultHeartbeat is Spec.Heartbeat when zero: a node that hears
	// nothing for this long assumes the bastion died, cleans up and exits.
	// A minute, not less: a bastion serving 100 hosts on a saturated
	// machine or link went silent for 15–20 s at a time and 9 of 100
	// healthy nodes gave up their job (docs/BENCHMARKS.md section 2).
	DefaultHeartbeat = 60 * time.Second
	// DefaultProgressEvery is Spec.ProgressEvery when zero, and the
	// period of jobs up to ProgressLinesPerSecond/4 hosts.
	DefaultProgressEvery = 250 * time.Millisecond
	// ProgressLinesPerSecond bounds the progress lines a job's nodes send
	// the bastion together (ProgressEveryFor). A line of a five-layer
	// image is about 760 bytes of JSON, about 850 on the wire: four a
	// second from each of 100 hosts is 2.7 Mbit/s into the bastion,
	// more than a 2 Mbit/s link carries, and the seeder's ACKs and the
	// peers' requests to it wait behind them. 50 a second is about 0.34
	// Mbit/s whatever the fleet.
	ProgressLinesPerSecond = 50
	// ReportEvery is the longest a running node stays silent: it sends
	// progress only when something changed, and EventAlive when nothing
	// did for this long. The bastion can then tell a node that has
	// nothing new (its last progress, peers included, still holds) from
	// one it no longer hears (the host frozen or starved, or its SSH
	// connection stalled), which a progress line alone cannot: in a
	// saturated 200-host lab, hosts were failed for "no peers" on a first
	// progress line minutes old. Each line costs the bastion's link about
	// as much as a heartbeat, in the other direction.
	ReportEvery = HeartbeatEvery
	// SilentAfter is the least time without any line after which the
	// bastion takes a node for unheard: three missed alive lines.
	SilentAfter = 3 * ReportEvery
)

// ProgressEveryFor is the progress period of a job to hosts hosts:
// DefaultProgressEvery for small jobs, then as long as keeps the job's
// lines under ProgressLinesPerSecond (1 s at 50 hosts, 4 s at 200), and
// at most half of ReportEvery, so that a node's alive line, which it
// checks at the same ticks, still goes out within ReportEvery or so.
func ProgressEveryFor(hosts int) time.Duration {
	d := time.Duration(hosts) * time.Second / ProgressLinesPerSecond
	return min(max(d, DefaultProgressEvery), ReportEvery/2)
}

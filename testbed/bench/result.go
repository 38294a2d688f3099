package bench

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/layercast/layercast/orchestrator/seed"
)

// The modes a run compares; they are layercast's --mode values.
const (
	ModeP2P      = "p2p"
	ModeRegistry = "registry"
)

// MB is the bench's size unit, as the article and the issue use it.
const MB = 1000 * 1000

// Result is one run: one mode, one cluster size, one image size.
type Result struct {
	Mode     string
	Hosts    int
	Size     int64 // image bytes
	RateBits int64 // link rate, bits per second
	// Propagation is the article's propagation time: from the job's start
	// (image prepared, hosts about to be reached) until the last host has
	// the image imported and checked.
	Propagation time.Duration
	// P50, P90 and Max are per-host completion times from the same start.
	P50, P90, Max time.Duration
	// Setup is the median time from the start until a host began to
	// download (SSH, node upload, daemon checks), SetupMax the longest;
	// Download and Import are the medians of the time a host spent
	// downloading and importing.
	Setup, SetupMax, Download, Import time.Duration
	// Missing is the size of the layers at least one host lacked (layers
	// every host reported skipped are present); Delivered is what the hosts
	// lacked summed over hosts: the bytes they received and imported.
	Missing, Delivered int64
	// BastionEgress is what the seeder sent (layercast's report);
	// BastionLink and RegistryLink are every byte the machine put on its
	// link (SSH and node uploads included, and what the link's queue then
	// dropped), from the veth counters.
	BastionEgress, BastionLink, RegistryLink int64
	// Flows is what crossed the bastion's link, by flow (bastionFlows):
	// its SSHOut is what the bastion sent the hosts' sshd (the node binary
	// uploads, with the job specs, control lines and ACKs, a few kB per
	// host), its SSHIn what they sent it (the nodes' events, progress lines
	// above all); its tracker's and seeder's bytes on the wire; its TCP
	// segments sent and retransmitted; the bytes its link's queue passed
	// on and the packets it dropped. All IP bytes; zero in files from
	// before their columns.
	Flows flowCounts
	// Resent is the part of BastionEgress the seeder had sent before, by
	// why it went again (layercast's report); zero in files from before
	// its columns.
	Resent seed.Resends
	// NodeFromBastion, NodeFromPeers and NodeFromCache count the hosts
	// that got the node binary by the bastion's upload, from another
	// host's node, or from their own node cache (layercast's report);
	// NodeUpload is the compressed bytes the bastion's uploads carried.
	NodeFromBastion, NodeFromPeers, NodeFromCache int
	NodeUpload                                    int64
	// TorrentsFromBastion and TorrentsFromPeers count the hosts that got
	// the layers' torrents in a line from the bastion or from another
	// host (layercast's report; zero in files from before these columns).
	TorrentsFromBastion, TorrentsFromPeers int
	// BastionRSSPeak and BastionHeapPeak are the largest resident set and
	// Go heap of layercast's process on the bastion, in bytes, and
	// BastionGoroutinesPeak and BastionFDsPeak its largest goroutine and
	// open file counts, sampled by layercast itself during the job (its
	// report's bastion object; zero in files from before these columns).
	BastionRSSPeak, BastionHeapPeak       int64
	BastionGoroutinesPeak, BastionFDsPeak int
	// ProcCPU is the CPU the lab's processes used during the run, by kind.
	ProcCPU ProcCPU
	// NodeIdle is the CPU share (CPU-seconds per second) of a host's node
	// processes once the host is done, while it only seeds or waits for the
	// job to end, averaged over NodeIdleSecs host-seconds.
	NodeIdle, NodeIdleSecs float64
	// CPU is the whole machine's busy share during the run, 0..1, on
	// average and at its busiest second.
	CPU, CPUPeak float64
	// Machine is the CPU-seconds the whole machine was busy during the run,
	// and IRQ and Steal the parts of it spent in interrupts and stolen by
	// the hypervisor (see cpuTimes): together with ProcCPU they tell where
	// the machine's time went.
	Machine MachineCPU
	Failed  int    // hosts that did not end done
	JobID   string // layercast's job id; a split run's whole row joins its jobs' with "+"
	// Split is how many layercast jobs the run was split into, run at once
	// over disjoint equal groups of its hosts (Config.Split); 0 or 1: one
	// job. Job is 0 on the row of the whole run and K (from 1) on the row
	// of its K-th job, whose Hosts, times, egress and node binary counts
	// are that job's alone; what the bench measures over the whole machine
	// (links, CPU by process except layercast's, the machine's CPU) is on
	// the whole run's row only.
	Split, Job int
}

// Whole reports whether r is the row of a whole run (a run of one job, or
// the combined row of a split run), not one job of a split run.
func (r Result) Whole() bool { return r.Job == 0 }

// Label is the run's mode, with its jobs when it was split: "p2p",
// "p2p, 2 jobs", "p2p, job 1 of 2".
func (r Result) Label() string {
	switch {
	case r.Split <= 1:
		return r.Mode
	case r.Job == 0:
		return fmt.Sprintf("%s, %d jobs", r.Mode, r.Split)
	default:
		return fmt.Sprintf("%s, job %d of %d", r.Mode, r.Job, r.Split)
	}
}

// ProcCPU is CPU-seconds by process kind (see KindNode and the others).
type ProcCPU struct {
	Node, Docker, Layercast, SSHD, Registry, Other, Kernel float64
}

func procCPUFrom(m map[string]float64) ProcCPU {
	return ProcCPU{
		Node: m[KindNode], Docker: m[KindDocker], Layercast: m[KindLayercast],
		SSHD: m[KindSSHD], Registry: m[KindRegistry], Other: m[KindOther], Kernel: m[KindKernel],
	}
}

// total is the CPU-seconds of every kind together, the kernel's threads
// included.
func (p ProcCPU) total() float64 {
	return p.Node + p.Docker + p.Layercast + p.SSHD + p.Registry + p.Other + p.Kernel
}

// MachineCPU is the whole machine's CPU-seconds during a run.
type MachineCPU struct {
	Busy, IRQ, Steal float64
}

// Outside is the machine's busy time that no kind holds: processes
// outside the lab (the bench itself) and interrupts taken while the CPU
// idled. Negative when the kinds hold more than the machine used.
func (m MachineCPU) Outside(p ProcCPU) float64 { return m.Busy - m.Steal - p.total() }

// excessOver returns by how much the kinds together exceed what the
// machine's processes can have used, its busy time less the time stolen
// from it, beyond a margin for the meters' windows (2 % and 2 s): zero
// when they fit. More than that means some process's time was counted
// twice. (Before kernel threads and steal were counted the margin was
// 5 %, and a double count of 2 % of the machine hid in it; a run reads
// 5–10 % steal on the lab's VM.)
func (p ProcCPU) excessOver(m MachineCPU) float64 {
	return max(p.total()-(m.Busy-m.Steal)*1.02-2, 0)
}

// EgressRatio is bastion egress ÷ the bytes of the layers some host
// lacked: 1 when the bastion sent each missing byte once.
func (r Result) EgressRatio() float64 {
	if r.Missing <= 0 {
		return 0
	}
	return float64(r.BastionEgress) / float64(r.Missing)
}

// BastionRSSPerHost is layercast's peak RSS on the bastion ÷ the run's
// hosts, in bytes; 0 when either is unknown.
func (r Result) BastionRSSPerHost() float64 {
	if r.Hosts <= 0 || r.BastionRSSPeak <= 0 {
		return 0
	}
	return float64(r.BastionRSSPeak) / float64(r.Hosts)
}

// PerGB is cpu seconds per GB (10^9 bytes) of n bytes; 0 when n is 0.
func PerGB(cpu float64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return cpu / (float64(n) / 1e9)
}

// Ideal is size ÷ rate: the time one host needs to receive the image over
// its own link, the physical limit of any distribution.
func (r Result) Ideal() time.Duration {
	if r.RateBits <= 0 {
		return 0
	}
	return time.Duration(float64(r.Size*8) / float64(r.RateBits) * float64(time.Second))
}

// LimitRatio is Propagation ÷ Ideal.
func (r Result) LimitRatio() float64 {
	if id := r.Ideal(); id > 0 {
		return r.Propagation.Seconds() / id.Seconds()
	}
	return 0
}

// Unreliable marks a run during which the machine's CPU, not the links,
// may have set the pace.
func (r Result) Unreliable() bool { return r.CPU > CPULimit }

// CPULimit is the average CPU share above which a run is unreliable.
const CPULimit = 0.85

// Results is every run of a bench.
type Results []Result

// Find returns the run of mode at hosts and size (a whole run's row, see
// Result.Whole).
func (rs Results) Find(mode string, hosts int, size int64) (Result, bool) {
	for _, r := range rs {
		if r.Whole() && r.Mode == mode && r.Hosts == hosts && r.Size == size {
			return r, true
		}
	}
	return Result{}, false
}

// Scaling is time(N) ÷ time(1) for a P2P run: its propagation time over
// that of the single-host P2P run of the same size (0 when there is none).
func (rs Results) Scaling(r Result) float64 {
	one, ok := rs.Find(r.Mode, 1, r.Size)
	if !ok || one.Propagation <= 0 {
		return 0
	}
	return r.Propagation.Seconds() / one.Propagation.Seconds()
}

// Sizes and HostCounts list the distinct values of whole runs, ascending.
func (rs Results) Sizes() []int64 {
	var out []int64
	for _, r := range rs {
		if r.Whole() && !slices.Contains(out, r.Size) {
			out = append(out, r.Size)
		}
	}
	slices.Sort(out)
	return out
}

func (rs Results) HostCounts() []int {
	var out []int
	for _, r := range rs {
		if r.Whole() && !slices.Contains(out, r.Hosts) {
			out = append(out, r.Hosts)
		}
	}
	slices.Sort(out)
	return out
}

// Crossover is the balance point at one cluster size.
type Crossover struct {
	Hosts int
	// Size is the interpolated image size at which both modes take equal
	// time, in bytes, when Found.
	Size  float64
	Found bool
	// Below is true when P2P was faster at every measured size (the
	// crossover lies below the smallest), false when registry was faster at
	// every size (it lies above the largest); meaningful when !Found.
	Below bool
	// Smallest and Largest are the sizes compared at this cluster size.
	Smallest, Largest int64
}

// Crossover interpolates, at one cluster size, the image size where the
// registry's and P2P's propagation times are equal: linearly between the
// two measured sizes where their difference changes sign (the first such
// pair from below).
func (rs Results) Crossover(hosts int) (Crossover, bool) {
	type pt struct {
		size float64
		diff float64 // registry - p2p, seconds: > 0 where P2P wins
	}
	var pts []pt
	for _, s := range rs.Sizes() {
		p, ok1 := rs.Find(ModeP2P, hosts, s)
		g, ok2 := rs.Find(ModeRegistry, hosts, s)
		if !ok1 || !ok2 || p.Failed > 0 || g.Failed > 0 {
			continue
		}
		pts = append(pts, pt{float64(s), g.Propagation.Seconds() - p.Propagation.Seconds()})
	}
	if len(pts) == 0 {
		return Crossover{Hosts: hosts}, false
	}
	x := Crossover{Hosts: hosts, Smallest: int64(pts[0].size), Largest: int64(pts[len(pts)-1].size)}
	if pts[0].diff >= 0 {
		x.Below = true
		return x, true
	}
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if b.diff >= 0 {
			f := -a.diff / (b.diff - a.diff)
			x.Size, x.Found = a.size+f*(b.size-a.size), true
			return x, true
		}
	}
	return x, true
}

var csvHeader = []string{
	"mode", "hosts", "size_mb", "rate_mbit", "propagation_s", "p50_s", "p90_s", "max_s",
	"setup_s", "download_s", "import_s", "ideal_s", "limit_ratio", "scaling",
	"bastion_egress_mb", "bastion_link_mb", "registry_link_mb",
	"cpu_avg_pct", "cpu_peak_pct", "unreliable", "failed_hosts", "job_id",
	"setup_max_s", "missing_mb", "delivered_mb", "egress_ratio", "node_bin_link_mb",
	"cpu_node_s", "cpu_docker_s", "cpu_layercast_s", "cpu_sshd_s", "cpu_registry_s", "cpu_other_s",
	"node_cpu_s_per_gb", "docker_cpu_s_per_gb", "layercast_cpu_s_per_gb_sent", "sshd_cpu_s_per_gb",
	"node_idle_cpu_ms_per_s", "node_idle_s",
	"node_from_bastion", "node_from_peers", "node_from_cache", "node_upload_mb",
	"bastion_rss_peak_mb", "bastion_heap_peak_mb", "bastion_goroutines_peak", "bastion_fds_peak",
	"split", "job", "bastion_ssh_in_mb",
	"bastion_tracker_mb", "bastion_seeder_wire_mb", "bastion_tcp_out_segs", "bastion_tcp_retrans_segs",
	"bastion_link_sent_mb", "bastion_link_dropped_pkts",
	"resent_rescue_mb", "resent_stuck_mb", "resent_idle_owner_mb", "resent_owner_left_mb", "resent_other_mb",
	"cpu_kernel_s", "cpu_machine_s", "cpu_irq_s", "cpu_steal_s",
	"torrents_from_bastion", "torrents_from_peers",
}

// jobAll is the job column of a whole run's row.
const jobAll = "all"

// csvHeaderMin is the oldest header ReadCSV still reads: the one before
// the per-process CPU columns. Every later header extends the one before,
// so a file with any prefix of csvHeader at least this long is read, and
// the columns it lacks stay zero.
var csvHeaderMin = csvHeader[:22]

// WriteCSV writes every run, one line each, with a header.
func (rs Results) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }
	mbs := func(b int64) string { return strconv.FormatFloat(float64(b)/MB, 'f', 1, 64) }
	f2 := func(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
	for _, r := range rs {
		scaling, limit, job := "", "", jobAll
		if r.Job > 0 {
			job = strconv.Itoa(r.Job)
		}
		if r.Mode == ModeP2P && r.Whole() {
			limit = f2(r.LimitRatio())
			if s := rs.Scaling(r); s > 0 {
				scaling = f2(s)
			}
		}
		rec := []string{
			r.Mode, strconv.Itoa(r.Hosts), mbs(r.Size), strconv.FormatFloat(float64(r.RateBits)/1e6, 'f', -1, 64),
			sec(r.Propagation), sec(r.P50), sec(r.P90), sec(r.Max),
			sec(r.Setup), sec(r.Download), sec(r.Import), sec(r.Ideal()), limit, scaling,
			mbs(r.BastionEgress), mbs(r.BastionLink), mbs(r.RegistryLink),
			strconv.FormatFloat(100*r.CPU, 'f', 0, 64), strconv.FormatFloat(100*r.CPUPeak, 'f', 0, 64),
			strconv.FormatBool(r.Unreliable()), strconv.Itoa(r.Failed), r.JobID,
			sec(r.SetupMax), mbs(r.Missing), mbs(r.Delivered), f2(r.EgressRatio()), mbs(r.Flows.SSHOut),
			f2(r.ProcCPU.Node), f2(r.ProcCPU.Docker), f2(r.ProcCPU.Layercast), f2(r.ProcCPU.SSHD), f2(r.ProcCPU.Registry), f2(r.ProcCPU.Other),
			f2(PerGB(r.ProcCPU.Node, r.Delivered)), f2(PerGB(r.ProcCPU.Docker, r.Delivered)),
			f2(PerGB(r.ProcCPU.Layercast, r.BastionEgress)), f2(PerGB(r.ProcCPU.SSHD, r.Delivered)),
			f2(1000 * r.NodeIdle), f2(r.NodeIdleSecs),
			strconv.Itoa(r.NodeFromBastion), strconv.Itoa(r.NodeFromPeers), strconv.Itoa(r.NodeFromCache), mbs(r.NodeUpload),
			mbs(r.BastionRSSPeak), mbs(r.BastionHeapPeak), strconv.Itoa(r.BastionGoroutinesPeak), strconv.Itoa(r.BastionFDsPeak),
			strconv.Itoa(max(r.Split, 1)), job, mbs(r.Flows.SSHIn),
			mbs(r.Flows.Tracker), mbs(r.Flows.Seeder), strconv.FormatInt(r.Flows.OutSegs, 10), strconv.FormatInt(r.Flows.Retrans, 10),
			mbs(r.Flows.LinkSent), strconv.FormatInt(r.Flows.Dropped, 10),
			mbs(r.Resent.Rescue), mbs(r.Resent.Stuck), mbs(r.Resent.IdleOwner), mbs(r.Resent.OwnerLeft), mbs(r.Resent.Other),
			f2(r.ProcCPU.Kernel), f2(r.Machine.Busy), f2(r.Machine.IRQ), f2(r.Machine.Steal),
			strconv.Itoa(r.TorrentsFromBastion), strconv.Itoa(r.TorrentsFromPeers),
		}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// ErrBadCSV reports a results file ReadCSV cannot read.
var ErrBadCSV = errors.New("bad bench csv")

// ReadCSV reads what WriteCSV wrote; derived columns are recomputed. A
// file from before the split and job columns holds runs of one job.
func ReadCSV(r io.Reader) (Results, error) {
	recs, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSV, err)
	}
	if len(recs) == 0 || len(recs[0]) < len(csvHeaderMin) || len(recs[0]) > len(csvHeader) || !slices.Equal(recs[0], csvHeader[:len(recs[0])]) {
		return nil, fmt.Errorf("%w: header is not %v", ErrBadCSV, csvHeader)
	}
	cols := len(recs[0])
	col := map[string]int{}
	for i, h := range csvHeader {
		col[h] = i
	}
	var out Results
	for n, rec := range recs[1:] {
		var perr error
		num := func(name string) float64 {
			if col[name] >= cols {
				return 0
			}
			v, err := strconv.ParseFloat(rec[col[name]], 64)
			if err != nil && perr == nil {
				perr = fmt.Errorf("%w: line %d, %s: %w", ErrBadCSV, n+2, name, err)
			}
			return v
		}
		sec := func(name string) time.Duration { return time.Duration(math.Round(num(name) * float64(time.Second))) }
		mbs := func(name string) int64 { return int64(math.Round(num(name) * MB)) }
		res := Result{
			Mode: rec[col["mode"]], Hosts: int(num("hosts")), Size: mbs("size_mb"),
			RateBits:    int64(math.Round(num("rate_mbit") * 1e6)),
			Propagation: sec("propagation_s"), P50: sec("p50_s"), P90: sec("p90_s"), Max: sec("max_s"),
			Setup: sec("setup_s"), Download: sec("download_s"), Import: sec("import_s"),
			BastionEgress: mbs("bastion_egress_mb"), BastionLink: mbs("bastion_link_mb"), RegistryLink: mbs("registry_link_mb"),
			CPU: num("cpu_avg_pct") / 100, CPUPeak: num("cpu_peak_pct") / 100,
			Failed: int(num("failed_hosts")), JobID: rec[col["job_id"]],
			SetupMax: sec("setup_max_s"), Missing: mbs("missing_mb"), Delivered: mbs("delivered_mb"),
			ProcCPU: ProcCPU{
				Node: num("cpu_node_s"), Docker: num("cpu_docker_s"), Layercast: num("cpu_layercast_s"),
				SSHD: num("cpu_sshd_s"), Registry: num("cpu_registry_s"), Other: num("cpu_other_s"),
				Kernel: num("cpu_kernel_s"),
			},
			Machine:  MachineCPU{Busy: num("cpu_machine_s"), IRQ: num("cpu_irq_s"), Steal: num("cpu_steal_s")},
			NodeIdle: num("node_idle_cpu_ms_per_s") / 1000, NodeIdleSecs: num("node_idle_s"),
			NodeFromBastion: int(num("node_from_bastion")), NodeFromPeers: int(num("node_from_peers")),
			NodeFromCache: int(num("node_from_cache")), NodeUpload: mbs("node_upload_mb"),
			TorrentsFromBastion: int(num("torrents_from_bastion")), TorrentsFromPeers: int(num("torrents_from_peers")),
			BastionRSSPeak: mbs("bastion_rss_peak_mb"), BastionHeapPeak: mbs("bastion_heap_peak_mb"),
			BastionGoroutinesPeak: int(num("bastion_goroutines_peak")), BastionFDsPeak: int(num("bastion_fds_peak")),
		}
		res.Flows = flowCounts{
			SSHOut: mbs("node_bin_link_mb"), SSHIn: mbs("bastion_ssh_in_mb"),
			Tracker: mbs("bastion_tracker_mb"), Seeder: mbs("bastion_seeder_wire_mb"),
			OutSegs: int64(num("bastion_tcp_out_segs")), Retrans: int64(num("bastion_tcp_retrans_segs")),
			LinkSent: mbs("bastion_link_sent_mb"), Dropped: int64(num("bastion_link_dropped_pkts")),
		}
		res.Resent = seed.Resends{
			Rescue: mbs("resent_rescue_mb"), Stuck: mbs("resent_stuck_mb"), IdleOwner: mbs("resent_idle_owner_mb"),
			OwnerLeft: mbs("resent_owner_left_mb"), Other: mbs("resent_other_mb"),
		}
		res.Split = max(int(num("split")), 1)
		if c := col["job"]; c < cols && rec[c] != jobAll && rec[c] != "" {
			res.Job = int(num("job"))
		}
		if perr != nil {
			return nil, perr
		}
		out = append(out, res)
	}
	return out, nil
}

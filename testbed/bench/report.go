package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Setup describes the bench's lab for the written outputs.
type Setup struct {
	Rate   string
	Layers int
	// CongestionControl is the lab's TCP congestion control; empty when
	// unknown (tables redrawn from a CSV).
	CongestionControl string
	// MaxRate is layercast's --max-rate in every run; "" for none.
	MaxRate string
	// ConnectTimeout is layercast's --connect-timeout in every run; 0 for
	// its default.
	ConnectTimeout time.Duration
}

// The files WriteAll writes into its directory.
const (
	CSVFile      = "results.csv"
	MarkdownFile = "results.md"
	Fig2File     = "fig2-time-vs-size.svg"
	Fig3File     = "fig3-balance-point.svg"
)

// WriteAll writes the CSV, the markdown tables and both figures into dir.
func WriteAll(dir string, rs Results, setup Setup) error {
	var csvBuf, md, f2, f3 bytes.Buffer
	if err := rs.WriteCSV(&csvBuf); err != nil {
		return err
	}
	rs.Markdown(&md, setup)
	if err := rs.Fig2().WriteSVG(&f2); err != nil {
		return err
	}
	if err := rs.Fig3().WriteSVG(&f3); err != nil {
		return err
	}
	for name, b := range map[string][]byte{CSVFile: csvBuf.Bytes(), MarkdownFile: md.Bytes(), Fig2File: f2.Bytes(), Fig3File: f3.Bytes()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write bench output: %w", err)
		}
	}
	return nil
}

// largestCompared is the largest cluster size measured in both modes at
// two sizes or more (a line needs two points), else at any size.
func (rs Results) largestCompared() int {
	best, bestOne := 0, 0
	for _, n := range rs.HostCounts() {
		both := 0
		for _, s := range rs.Sizes() {
			_, a := rs.Find(ModeP2P, n, s)
			_, b := rs.Find(ModeRegistry, n, s)
			if a && b {
				both++
			}
		}
		if both >= 2 {
			best = n
		}
		if both >= 1 {
			bestOne = n
		}
	}
	if best == 0 {
		return bestOne
	}
	return best
}

// Fig2 is the article's Figure 2: propagation time against image size per
// mode, at the largest cluster size measured in both modes (see
// largestCompared).
func (rs Results) Fig2() Chart {
	n := rs.largestCompared()
	c := Chart{
		Title:  fmt.Sprintf("Propagation time by image size, %d hosts", n),
		XLabel: "image size (MB)", YLabel: "time until the last host has the image (s)",
	}
	var rate int64
	for _, m := range []string{ModeRegistry, ModeP2P} {
		s := Series{Name: map[string]string{ModeRegistry: "registry (docker pull)", ModeP2P: "layercast P2P"}[m]}
		for _, size := range rs.Sizes() {
			if r, ok := rs.Find(m, n, size); ok && r.Failed == 0 {
				s.Points = append(s.Points, [2]float64{float64(size) / MB, r.Propagation.Seconds()})
				rate = r.RateBits
			}
		}
		c.Series = append(c.Series, s)
	}
	if rate > 0 {
		ideal := Series{Name: "size ÷ link rate"}
		for _, size := range rs.Sizes() {
			ideal.Points = append(ideal.Points, [2]float64{float64(size) / MB, float64(size*8) / float64(rate)})
		}
		c.Series = append(c.Series, ideal)
		c.Notes = append(c.Notes, fmt.Sprintf("every link (hosts, bastion, registry) shaped to %g Mbit/s", float64(rate)/1e6))
	}
	return c
}

// Fig3 is the article's Figure 3: the balance point against cluster size.
func (rs Results) Fig3() Chart {
	c := Chart{
		Title:  "Balance point by cluster size",
		XLabel: "hosts", YLabel: "image size where both modes take equal time (MB)",
	}
	s := Series{Name: "balance point"}
	for _, n := range rs.HostCounts() {
		x, ok := rs.Crossover(n)
		switch {
		case !ok:
		case x.Found:
			s.Points = append(s.Points, [2]float64{float64(n), x.Size / MB})
		case x.Below:
			c.Notes = append(c.Notes, fmt.Sprintf("%d hosts: P2P faster at every measured size (balance point below %d MB)", n, x.Smallest/MB))
		default:
			c.Notes = append(c.Notes, fmt.Sprintf("%d hosts: registry faster at every measured size (balance point above %d MB)", n, x.Largest/MB))
		}
	}
	c.Series = append(c.Series, s)
	return c
}

func secs(r Result, ok bool) string {
	if !ok {
		return "–"
	}
	s := fmt.Sprintf("%.1f", r.Propagation.Seconds())
	if r.Failed > 0 {
		s += fmt.Sprintf(" (%d failed)", r.Failed)
	}
	if r.Unreliable() {
		s += " ⚠"
	}
	return s
}

// Markdown writes the bench's tables.
func (rs Results) Markdown(w *bytes.Buffer, setup Setup) {
	fmt.Fprintf(w, "Links: every machine (hosts, bastion, registry) shaped to %s both ways; images of %d layers.\n", setup.Rate, setup.Layers)
	if setup.CongestionControl != "" {
		fmt.Fprintf(w, "TCP congestion control on every machine: %s.\n", setup.CongestionControl)
	}
	if setup.MaxRate != "" {
		fmt.Fprintf(w, "layercast ran with --max-rate %s: the bastion's upload (seeder and node binary) kept under it.\n", setup.MaxRate)
	}
	if setup.ConnectTimeout > 0 {
		fmt.Fprintf(w, "layercast ran with --connect-timeout %s.\n", setup.ConnectTimeout)
	}
	fmt.Fprintf(w, "Times in seconds from the job's start until the last host has the image; ⚠ marks a run whose average CPU was above %.0f%% (unreliable).\n\n", 100*CPULimit)

	w.WriteString("### Propagation time by cluster size and image size\n\n")
	w.WriteString("| hosts | size MB | registry s | P2P s | P2P ÷ registry | P2P ÷ (size ÷ rate) | P2P time(N) ÷ time(1) | CPU avg registry / P2P |\n")
	w.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, n := range rs.HostCounts() {
		for _, s := range rs.Sizes() {
			p, okP := rs.Find(ModeP2P, n, s)
			g, okG := rs.Find(ModeRegistry, n, s)
			if !okP && !okG {
				continue
			}
			ratio, limit, scaling, cpu := "–", "–", "–", ""
			if okP && okG && g.Propagation > 0 {
				ratio = fmt.Sprintf("%.2f", p.Propagation.Seconds()/g.Propagation.Seconds())
			}
			if okP {
				limit = fmt.Sprintf("%.2f", p.LimitRatio())
				if sc := rs.Scaling(p); sc > 0 {
					scaling = fmt.Sprintf("%.2f", sc)
				}
			}
			cpuOf := func(r Result, ok bool) string {
				if !ok {
					return "–"
				}
				return fmt.Sprintf("%.0f%%", 100*r.CPU)
			}
			cpu = cpuOf(g, okG) + " / " + cpuOf(p, okP)
			fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s |\n", n, s/MB, secs(g, okG), secs(p, okP), ratio, limit, scaling, cpu)
		}
	}

	w.WriteString("\n### Balance point (crossover) by cluster size\n\n")
	w.WriteString("| hosts | balance point |\n| ---: | --- |\n")
	for _, n := range rs.HostCounts() {
		x, ok := rs.Crossover(n)
		var v string
		switch {
		case !ok:
			continue
		case x.Found:
			v = fmt.Sprintf("%.0f MB", x.Size/MB)
		case x.Below:
			v = fmt.Sprintf("below %d MB (P2P faster at every size measured)", x.Smallest/MB)
		default:
			v = fmt.Sprintf("above %d MB (registry faster at every size measured)", x.Largest/MB)
		}
		fmt.Fprintf(w, "| %d | %s |\n", n, v)
	}

	w.WriteString("\n### Every run\n\n")
	w.WriteString("| mode | hosts | size MB | time s | p50 s | p90 s | max s | setup s | download s | import s | bastion seeder MB | bastion link MB | registry link MB | CPU avg / peak |\n")
	w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		fmt.Fprintf(w, "| %s | %d | %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f%% / %.0f%% |\n",
			r.Label(), r.Hosts, r.Size/MB, secs(r, true), r.P50.Seconds(), r.P90.Seconds(), r.Max.Seconds(),
			r.Setup.Seconds(), r.Download.Seconds(), r.Import.Seconds(),
			float64(r.BastionEgress)/MB, float64(r.BastionLink)/MB, float64(r.RegistryLink)/MB, 100*r.CPU, 100*r.CPUPeak)
	}
	if slices.ContainsFunc(rs, func(r Result) bool { return r.Split > 1 }) {
		w.WriteString("\nA run split into jobs (\"p2p, 2 jobs\") ran that many layercast jobs at once from the bastion over disjoint equal groups of its hosts; its row's time is the slowest job's, per-host times are over every host, from each host's own job's start; the rows \"job K of N\" are each job alone, with the bastion's link and the machine's CPU on the whole run's row only.\n")
	}
	w.WriteString("\nsetup: job start until the host began downloading (SSH, node upload, daemon check); download, import: time in each state (medians over hosts). In registry mode the node reports pulling as downloading.\n")

	w.WriteString("\n### Bastion link and CPU by process\n\n")
	w.WriteString("| mode | hosts | size MB | missing MB | egress ÷ missing | node binary MB on bastion link | setup median / max s | node CPU-s per GB | docker CPU-s per GB | sshd CPU-s per GB | layercast CPU-s per GB sent | node CPU when done, ms/s | layercast RSS peak MB (per host) |\n")
	w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		egress, perSent, idle, rss := "–", "–", "–", "–"
		if r.Mode == ModeP2P && r.Missing > 0 {
			egress = fmt.Sprintf("%.2f", r.EgressRatio())
		}
		if r.BastionEgress > 0 {
			perSent = fmt.Sprintf("%.1f", PerGB(r.ProcCPU.Layercast, r.BastionEgress))
		}
		if r.NodeIdleSecs > 0 {
			idle = fmt.Sprintf("%.1f", 1000*r.NodeIdle)
		}
		if per := r.BastionRSSPerHost(); per > 0 {
			rss = fmt.Sprintf("%.0f (%.2f)", float64(r.BastionRSSPeak)/MB, per/MB)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %s | %.1f | %.1f / %.1f | %.1f | %.1f | %.1f | %s | %s | %s |\n",
			r.Label(), r.Hosts, r.Size/MB, float64(r.Missing)/MB, egress, float64(r.Flows.SSHOut)/MB,
			r.Setup.Seconds(), r.SetupMax.Seconds(),
			PerGB(r.ProcCPU.Node, r.Delivered), PerGB(r.ProcCPU.Docker, r.Delivered), PerGB(r.ProcCPU.SSHD, r.Delivered),
			perSent, idle, rss)
	}
	w.WriteString("\nmissing: the layers at least one host lacked (from the hosts' progress: skipped layers are present); egress: what the bastion's seeder sent. " +
		"Node binary: bytes the bastion sent to the hosts' sshd (an iptables counter on TCP port 22 in the bastion's namespace: binary uploads plus job specs and control lines). " +
		"CPU: user+system of the lab's processes from /proc/PID/stat, sampled every 200 ms, a process's last fraction of a second recovered from its parent's children time; " +
		"per GB of the bytes the hosts received and imported (summed over hosts), layercast's per GB its seeder sent. docker is dockerd with docker-untar, containerd and shims. " +
		"Node CPU when done: a node's CPU while it only seeds or waits for the job's end, from its host's done event to the end. " +
		"layercast RSS peak: the largest resident set of layercast's process on the bastion, sampled by itself every 250 ms during the job (its report's bastion object), " +
		"and that ÷ hosts; the process's fixed part is in it, so the growth from one cluster size to the next is the cost of the hosts added.\n")

	machineCPU(w, rs)

	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Flows.LinkSent > 0 || r.Flows.Seeder > 0 }) {
		return // runs from before the per-flow counters
	}
	w.WriteString("\n### The bastion's link by flow\n\n")
	w.WriteString("| mode | hosts | size MB | seeder payload MB | seeder on the wire MB | tracker MB | SSH out MB | SSH in MB | other MB | link carried MB | TCP segments retransmitted | link queue drops |\n")
	w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		f := r.Flows
		other := r.BastionLink - f.Seeder - f.Tracker - f.SSHOut
		retrans := "–"
		if f.OutSegs > 0 {
			retrans = fmt.Sprintf("%.1f %% (%d)", 100*float64(f.Retrans)/float64(f.OutSegs), f.Retrans)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %d |\n",
			r.Label(), r.Hosts, r.Size/MB, float64(r.BastionEgress)/MB, float64(f.Seeder)/MB, float64(f.Tracker)/MB,
			float64(f.SSHOut)/MB, float64(f.SSHIn)/MB, float64(other)/MB, float64(f.LinkSent)/MB, retrans, f.Dropped)
	}
	w.WriteString("\nWhat the bastion sent, by flow, in IP bytes (iptables counters in its namespace): seeder payload is the blocks its seeder sent (layercast's report), " +
		"on the wire everything sent from the seeder's port (headers, protocol messages, ACKs, retransmissions); tracker likewise from the tracker's port; SSH out to the hosts' sshd, SSH in from them (the other direction of the link). " +
		"Other: what else the bastion put on its link (ARP, and what the counters started too late to see). Link carried: the bytes its link's queue passed on; drops: the packets the queue refused. " +
		"Retransmitted: the bastion's TCP segments sent again, of all it sent.\n")

	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Resent.Total() > 0 }) {
		return
	}
	w.WriteString("\n### What the seeder sent again, by why\n\n")
	w.WriteString("| mode | hosts | size MB | missing MB | seeder payload MB | sent again MB | rescue | stuck | idle owner | owner left | other |\n")
	w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		x := r.Resent
		fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n",
			r.Label(), r.Hosts, r.Size/MB, float64(r.Missing)/MB, float64(r.BastionEgress)/MB, float64(x.Total())/MB,
			float64(x.Rescue)/MB, float64(x.Stuck)/MB, float64(x.IdleOwner)/MB, float64(x.OwnerLeft)/MB, float64(x.Other)/MB)
	}
	w.WriteString("\nMB of piece data the seeder had sent before (layercast's report, `bastion_resent`): rescue went to hosts that heard from no peer for a while; " +
		"stuck were pieces whose one holder did not pass them on; idle owner, pieces taken from a connection that went quiet on them; " +
		"owner left, pieces whose connection closed before it reported them; other, asked again by the connection they went to.\n")
}

// machineCPU writes where the machine's CPU went in each run: the lab's
// process kinds, the kernel's threads, the time the hypervisor stole, and
// what is left (processes outside the lab and interrupts taken while a CPU
// idled). Runs from before these columns have none and get no table.
func machineCPU(w *bytes.Buffer, rs Results) {
	if !slices.ContainsFunc(rs, func(r Result) bool { return r.Whole() && r.Machine.Busy > 0 }) {
		return
	}
	w.WriteString("\n### Where the machine's CPU went\n\n")
	w.WriteString("| mode | hosts | size MB | machine busy CPU-s | node | docker | layercast | sshd | registry | other | kernel threads | stolen | outside the lab | interrupts (inside the above) |\n")
	w.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		if !r.Whole() || r.Machine.Busy <= 0 {
			continue
		}
		p := r.ProcCPU
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f |\n",
			r.Label(), r.Hosts, r.Size/MB, r.Machine.Busy, p.Node, p.Docker, p.Layercast, p.SSHD, p.Registry, p.Other, p.Kernel,
			r.Machine.Steal, r.Machine.Outside(p), r.Machine.IRQ)
	}
	w.WriteString("\nCPU-seconds over the run, from /proc/stat (the machine) and /proc/PID/stat (the processes, as in the table above). " +
		"Kernel threads: kworker (writeback of the hosts' files), ksoftirqd, kswapd and the like, the machine's, not only the lab's. " +
		"Stolen: time the hypervisor gave the machine's CPUs to others; it counts as busy in the CPU average. " +
		"Outside the lab: the rest, processes in no lab machine (the bench itself) and interrupts taken while a CPU idled; negative when some process was counted twice. " +
		"Interrupts: hardware and soft interrupt time, mostly the network stack carrying the lab's links; with the tick-based accounting of the lab's kernel it is charged to the process it interrupted as well, so it is a part of the columns before, not beside them.\n")
}

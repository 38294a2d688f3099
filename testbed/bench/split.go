package bench

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/layercast/layercast/orchestrator"
)

// splitHosts cuts a run's hosts, in order, into n disjoint groups of equal
// size: the inventory groups of n jobs run at once (a CI matrix over
// groups).
func splitHosts(hosts []string, n int) ([][]string, error) {
	if n < 1 || len(hosts) < n || len(hosts)%n != 0 {
		return nil, fmt.Errorf("%w: %d hosts do not split into %d equal groups", ErrInvalidConfig, len(hosts), n)
	}
	size := len(hosts) / n
	groups := make([][]string, n)
	for k := range groups {
		groups[k] = hosts[k*size : (k+1)*size : (k+1)*size]
	}
	return groups, nil
}

// jobName names one job's files of a run split into jobs: RUN-jK (K from 1).
func jobName(run string, k int) string { return fmt.Sprintf("%s-j%d", run, k) }

// mergeTimelines joins the timelines of jobs run at once over disjoint
// hosts into the timeline of one job that reached every host: started at
// the first job's start; a report whose hosts are every job's, whose
// duration is the longest and whose byte and host counts are the jobs'
// sums. The bastion's peaks are summed too: the jobs' processes ran side
// by side, so the sum bounds what they held at once.
func mergeTimelines(tls []*timeline) *timeline {
	out := &timeline{
		states: map[string]map[orchestrator.HostState]time.Time{},
		layers: map[string][]orchestrator.LayerProgress{},
		report: &orchestrator.Report{},
	}
	var ids []string
	rep := out.report
	for _, tl := range tls {
		if out.started.IsZero() || (!tl.started.IsZero() && tl.started.Before(out.started)) {
			out.started = tl.started
		}
		if out.job == nil {
			out.job = tl.job
		}
		maps.Copy(out.states, tl.states)
		maps.Copy(out.layers, tl.layers)
		r := tl.report
		if r == nil {
			continue
		}
		ids = append(ids, r.JobID)
		rep.Hosts = append(rep.Hosts, r.Hosts...)
		rep.Duration = max(rep.Duration, r.Duration)
		rep.Egress += r.Egress
		rep.Resent = rep.Resent.Plus(r.Resent)
		nb := &rep.NodeBinary
		nb.FromBastion += r.NodeBinary.FromBastion
		nb.FromPeers += r.NodeBinary.FromPeers
		nb.FromCache += r.NodeBinary.FromCache
		nb.BastionBytes += r.NodeBinary.BastionBytes
		bu := &rep.Bastion
		bu.PeakRSS += r.Bastion.PeakRSS
		bu.PeakHeap += r.Bastion.PeakHeap
		bu.PeakGoroutines += r.Bastion.PeakGoroutines
		bu.PeakOpenFiles += r.Bastion.PeakOpenFiles
	}
	rep.JobID = strings.Join(ids, "+")
	return out
}

// combine is the row of a whole split run from its jobs' rows and
// timelines, in job order: per-host times, setup, missing and delivered
// bytes over every host (see mergeTimelines); the fleet's time is the
// slowest job's; layercast's CPU is the jobs' processes' sum. The caller
// adds what it measured over the whole run (links, CPU by process, the
// machine's CPU).
func combine(jobs []Result, tls []*timeline) Result {
	r := Result{Split: len(jobs), Job: 0}
	if len(jobs) > 0 {
		r.Mode, r.Size, r.RateBits = jobs[0].Mode, jobs[0].Size, jobs[0].RateBits
	}
	mergeTimelines(tls).fill(&r)
	r.Propagation = 0
	for _, j := range jobs {
		r.Hosts += j.Hosts
		r.Propagation = max(r.Propagation, j.Propagation)
		r.ProcCPU.Layercast += j.ProcCPU.Layercast
	}
	return r
}

package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/layercast/layercast/orchestrator"
)

// ErrNoReport reports a layercast run that ended without its final report.
var ErrNoReport = errors.New("layercast ended without a report")

// timeline is what the event stream of one job tells about its hosts.
type timeline struct {
	report  *orchestrator.Report
	started time.Time
	job     *orchestrator.JobInfo
	// first time each host entered each state
	states map[string]map[orchestrator.HostState]time.Time
	// each host's layers as its last progress event listed them
	layers map[string][]orchestrator.LayerProgress
}

// readEvents reads `layercast run --json` output, copying every line to
// keep (the run's event log) when it is not nil.
func readEvents(r io.Reader, keep io.Writer) (*timeline, error) {
	tl := &timeline{
		states: map[string]map[orchestrator.HostState]time.Time{},
		layers: map[string][]orchestrator.LayerProgress{},
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if keep != nil {
			_, _ = keep.Write(append(bytes.Clone(line), '\n'))
		}
		var e orchestrator.Event
		if err := json.Unmarshal(line, &e); err != nil {
			continue // not an event; the log keeps it
		}
		switch e.Kind {
		case orchestrator.EventJobStarted:
			tl.started, tl.job = e.Time, e.Job
		case orchestrator.EventHostProgress:
			if e.Progress != nil && len(e.Progress.Layers) > 0 {
				tl.layers[e.Host] = e.Progress.Layers
			}
		case orchestrator.EventHostState:
			m := tl.states[e.Host]
			if m == nil {
				m = map[orchestrator.HostState]time.Time{}
				tl.states[e.Host] = m
			}
			if _, seen := m[e.State]; !seen {
				m[e.State] = e.Time
			}
		case orchestrator.EventJobDone:
			tl.report = e.Report
		}
	}
	if err := sc.Err(); err != nil {
		return tl, fmt.Errorf("read events: %w", err)
	}
	if tl.report == nil {
		return tl, ErrNoReport
	}
	return tl, nil
}

// fill sets r's times and host counts from the timeline.
func (tl *timeline) fill(r *Result) {
	rep := tl.report
	r.JobID = rep.JobID
	r.BastionEgress, r.Resent = rep.Egress, rep.Resent
	nb := rep.NodeBinary
	r.NodeFromBastion, r.NodeFromPeers, r.NodeFromCache, r.NodeUpload = nb.FromBastion, nb.FromPeers, nb.FromCache, nb.BastionBytes
	r.TorrentsFromBastion, r.TorrentsFromPeers = rep.Torrents.FromBastion, rep.Torrents.FromPeers
	bu := rep.Bastion
	r.BastionRSSPeak, r.BastionHeapPeak, r.BastionGoroutinesPeak, r.BastionFDsPeak = bu.PeakRSS, bu.PeakHeap, bu.PeakGoroutines, bu.PeakOpenFiles
	var done []time.Duration
	for _, h := range rep.Hosts {
		if h.State != orchestrator.HostDone {
			r.Failed++
			continue
		}
		done = append(done, h.Duration)
	}
	slices.Sort(done)
	if len(done) > 0 {
		r.P50, r.P90, r.Max = quantile(done, 0.5), quantile(done, 0.9), done[len(done)-1]
	}
	r.Propagation = r.Max
	if r.Failed > 0 {
		r.Propagation = rep.Duration
	}
	var setup, dl, imp []time.Duration
	for _, st := range tl.states {
		d, okD := st[orchestrator.HostDownloading]
		i, okI := st[orchestrator.HostImporting]
		e, okE := st[orchestrator.HostDone]
		if okD && !tl.started.IsZero() {
			setup = append(setup, d.Sub(tl.started))
		}
		if okD && okI {
			dl = append(dl, i.Sub(d))
		}
		if okI && okE {
			imp = append(imp, e.Sub(i))
		}
	}
	for _, v := range []*[]time.Duration{&setup, &dl, &imp} {
		slices.Sort(*v)
	}
	r.Setup, r.Download, r.Import = quantile(setup, 0.5), quantile(dl, 0.5), quantile(imp, 0.5)
	if len(setup) > 0 {
		r.SetupMax = setup[len(setup)-1]
	}
	r.Missing, r.Delivered = tl.missing()
}

// missing returns the bytes of the layers that at least one host lacked
// (the least a bastion must send) and the bytes the hosts lacked summed
// over hosts (what they received and imported). A layer is present on a
// host when its progress marks it skipped. Hosts that never reported
// progress lacked every layer.
func (tl *timeline) missing() (missing, delivered int64) {
	size := map[string]int64{}
	var order []string
	if tl.job != nil {
		for _, l := range tl.job.Layers {
			if _, ok := size[l.Digest]; !ok {
				order = append(order, l.Digest)
			}
			size[l.Digest] = l.Size
		}
	}
	lacked := map[string]bool{}
	hosts := map[string]bool{}
	if tl.report != nil {
		for _, h := range tl.report.Hosts {
			hosts[h.Host] = true
		}
	}
	// Every layer any host reported is known before a silent host is
	// charged with all of them (registry mode's job lists no layers).
	for h, layers := range tl.layers {
		hosts[h] = true
		for _, l := range layers {
			if _, known := size[l.Digest]; !known {
				order = append(order, l.Digest)
				size[l.Digest] = l.Total
			}
		}
	}
	for h := range hosts {
		layers, ok := tl.layers[h]
		if !ok {
			for _, d := range order {
				lacked[d] = true
				delivered += size[d]
			}
			continue
		}
		seen := map[string]bool{}
		for _, l := range layers {
			if l.Skipped || seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			lacked[l.Digest] = true
			delivered += size[l.Digest]
		}
	}
	for _, d := range order {
		if lacked[d] {
			missing += size[d]
		}
	}
	return missing, delivered
}

// doneTimes is when each host got done.
func (tl *timeline) doneTimes() map[string]time.Time {
	out := map[string]time.Time{}
	for h, st := range tl.states {
		if t, ok := st[orchestrator.HostDone]; ok {
			out[h] = t
		}
	}
	return out
}

// quantile of sorted values, nearest rank; 0 for none.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// runFlags are the layercast flags every run of a bench sets when given.
type runFlags struct {
	maxRate        string        // --max-rate; "" for none
	connectTimeout time.Duration // --connect-timeout; 0 for layercast's default
	logFile        string        // --log-file; "" for stderr
}

// runArgs is the layercast command line of one run.
func runArgs(bin, mode, inventory, cacheDir, image string, hosts []string, fl runFlags) []string {
	args := []string{
		bin, "run", "--json", "--mode", mode, "-i", inventory,
		"--hosts", strings.Join(hosts, ","),
		// every host at once, as the article's docker pull baseline does
		"--concurrency", fmt.Sprint(max(len(hosts), 1)),
		"--progress-interval", "500ms",
		"--cache-dir", cacheDir,
	}
	if fl.maxRate != "" {
		args = append(args, "--max-rate", fl.maxRate)
	}
	if fl.logFile != "" {
		args = append(args, "--log-file", fl.logFile)
	}
	if fl.connectTimeout > 0 {
		args = append(args, "--connect-timeout", fl.connectTimeout.String())
	}
	return append(args, image)
}

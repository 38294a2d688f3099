package tui

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/orchestrator"
)

const (
	maxHostLogs = 200 // log lines kept per host for its detail
	maxJobLogs  = 200 // lines kept for the run screen's log pane
)

// logLine is one line of a log pane.
type logLine struct {
	t    time.Time
	host string // empty for the job itself
	msg  string
}

// hostRow is everything known about one host of the running job.
type hostRow struct {
	name     string
	width    int            // cells of name
	inv      *InventoryHost // nil when the inventory does not know it
	state    orchestrator.HostState
	reason   string // why it failed
	prog     orchestrator.HostProgress
	hasProg  bool
	info     *orchestrator.HostInfo // what the probe learned, once it did
	started  time.Time              // left pending
	ended    time.Time              // reached a terminal state
	logs     []logLine
	tornDown bool
	result   *orchestrator.HostResult
	search   string // lower-case text the filter matches against
}

func (h *hostRow) total(jobSize int64) int64 {
	if h.hasProg && h.prog.Total > 0 {
		return h.prog.Total
	}
	return jobSize
}

func (h *hostRow) done(jobSize int64) int64 {
	if h.state == orchestrator.HostDone && !h.hasProg {
		return jobSize
	}
	return h.prog.Done
}

// fraction of the image present on the host.
func (h *hostRow) fraction(jobSize int64) float64 {
	return fraction(h.done(jobSize), h.total(jobSize))
}

// peerShare is the share of downloaded bytes that came from other hosts.
func (h *hostRow) peerShare() (float64, bool) {
	got := h.prog.FromPeers + h.prog.FromSeeder
	if got <= 0 {
		return 0, false
	}
	return float64(h.prog.FromPeers) / float64(got), true
}

func (h *hostRow) elapsed(now time.Time) time.Duration {
	if h.result != nil && h.result.Duration > 0 {
		return h.result.Duration
	}
	switch {
	case h.started.IsZero():
		return 0
	case !h.ended.IsZero():
		return h.ended.Sub(h.started)
	default:
		return now.Sub(h.started)
	}
}

// jobState is the console's picture of one job, built from its events.
type jobState struct {
	seq     int
	opts    orchestrator.Options
	cancel  context.CancelFunc
	queue   *eventQueue
	info    orchestrator.JobInfo
	began   bool      // job_started seen
	started time.Time // job_started time
	ended   time.Time
	step    string

	hosts     []*hostRow
	byName    map[string]*hostRow
	inventory map[string]*InventoryHost
	seeder    orchestrator.SeederStats
	logs      []logLine

	report     *orchestrator.Report
	err        error
	finished   bool // Engine.Run returned
	cancelling bool // the operator confirmed a cancel
	bastionOff bool // the bastion's own teardown finished

	// rowsGen changes whenever a host is added, a host's state changes or
	// the job starts: what the run screen filters on and sorts by state or
	// name. progGen changes with every host's progress, which it sorts by
	// progress on. The run screen re-sorts only when they moved.
	rowsGen uint64
	progGen uint64

	// Aggregates, recomputed after every batch.
	counts    map[orchestrator.HostState]int
	doneBytes int64
	allBytes  int64
	rate      float64
	tornDown  int
	longest   int // widest host name, in cells
}

// newJobState starts the picture of a job on the planned hosts, shown until
// job_started names the job's hosts.
func newJobState(seq int, opts orchestrator.Options, inv Inventory, planned []string) *jobState {
	j := &jobState{
		seq:    seq,
		opts:   opts,
		byName: make(map[string]*hostRow),
		counts: make(map[orchestrator.HostState]int),
	}
	known := make(map[string]*InventoryHost, len(inv.Hosts))
	for i := range inv.Hosts {
		known[inv.Hosts[i].Name] = &inv.Hosts[i]
	}
	// Until job_started names the hosts, show the ones the operator chose.
	j.inventory = known
	for _, name := range planned {
		j.row(name, known)
	}
	return j
}

// row returns the host's row, adding one for a host not seen before.
func (j *jobState) row(name string, known map[string]*InventoryHost) *hostRow {
	if h, ok := j.byName[name]; ok {
		return h
	}
	h := &hostRow{name: name, width: ansi.StringWidth(name), state: orchestrator.HostPending, inv: known[name]}
	h.search = strings.ToLower(name)
	if h.inv != nil {
		h.search += " " + strings.ToLower(strings.Join(h.inv.Groups, " ")+" "+h.inv.Address)
	}
	j.hosts = append(j.hosts, h)
	j.byName[name] = h
	j.rowsGen++
	return h
}

func (j *jobState) addLog(l logLine) {
	j.logs = appendCapped(j.logs, l, maxJobLogs)
}

func appendCapped(s []logLine, l logLine, limit int) []logLine {
	if len(s) >= limit {
		s = slices.Delete(s, 0, len(s)-limit+1)
	}
	return append(s, l)
}

// apply folds one engine event into the state.
func (j *jobState) apply(e orchestrator.Event, now time.Time) {
	t := e.Time
	if t.IsZero() {
		t = now
	}
	switch e.Kind {
	case orchestrator.EventJobStarted:
		j.began = true
		j.started = t
		j.rowsGen++
		if e.Job != nil {
			j.info = *e.Job
			for _, name := range e.Job.Hosts {
				j.row(name, j.inventory)
			}
			for _, l := range e.Job.Ignored {
				j.addLog(logLine{t: t, msg: "inventory: ignored: " + l})
			}
		}
	case orchestrator.EventStep:
		j.step = e.Message
		j.addLog(logLine{t: t, msg: e.Message})
	case orchestrator.EventHostState:
		h := j.row(e.Host, j.inventory)
		if e.State == orchestrator.HostConnecting && h.state != orchestrator.HostPending && h.state != orchestrator.HostConnecting {
			// Set up again on a new SSH connection: the lost node's
			// bytes are gone with its work dir.
			h.hasProg, h.prog = false, orchestrator.HostProgress{}
			j.progGen++
		}
		h.state = e.State
		j.rowsGen++
		if h.started.IsZero() && e.State != orchestrator.HostPending {
			h.started = t
		}
		if e.State.Terminal() && h.ended.IsZero() {
			h.ended = t
		}
		if e.State == orchestrator.HostFailed && e.Message != "" {
			h.reason = e.Message
		}
		msg := "→ " + stateLabel(e.State)
		if e.Message != "" {
			msg += ": " + e.Message
		}
		h.logs = appendCapped(h.logs, logLine{t: t, host: e.Host, msg: msg}, maxHostLogs)
		if e.State.Terminal() {
			j.addLog(logLine{t: t, host: e.Host, msg: msg})
		}
	case orchestrator.EventHostProgress:
		if e.Progress == nil {
			return
		}
		h := j.row(e.Host, j.inventory)
		h.prog = *e.Progress
		h.hasProg = true
		j.progGen++
	case orchestrator.EventHostInfo:
		if e.Info != nil {
			info := *e.Info
			j.row(e.Host, j.inventory).info = &info
		}
	case orchestrator.EventHostLog:
		h := j.row(e.Host, j.inventory)
		l := logLine{t: t, host: e.Host, msg: e.Message}
		h.logs = appendCapped(h.logs, l, maxHostLogs)
		j.addLog(l)
	case orchestrator.EventSeeder:
		if e.Seeder != nil {
			j.seeder = *e.Seeder
		}
	case orchestrator.EventTeardown:
		if e.Host == "" {
			j.bastionOff = true
			j.addLog(logLine{t: t, msg: "bastion: tracker and seeder stopped"})
			return
		}
		h := j.row(e.Host, j.inventory)
		h.tornDown = true
		msg := "teardown finished"
		if e.Message != "" {
			msg += ": " + e.Message
		}
		h.logs = appendCapped(h.logs, logLine{t: t, host: e.Host, msg: msg}, maxHostLogs)
	case orchestrator.EventJobDone:
		j.ended = t
		if e.Report != nil {
			j.applyReport(e.Report)
		}
	}
}

// applyReport takes the final word on every host from the report.
func (j *jobState) applyReport(r *orchestrator.Report) {
	j.report = r
	for i := range r.Hosts {
		hr := &r.Hosts[i]
		h := j.row(hr.Host, j.inventory)
		h.result = hr
		if !h.state.Terminal() {
			h.state = hr.State
			j.rowsGen++
		}
		if h.reason == "" {
			h.reason = hr.Error
		}
	}
}

// finish records Engine.Run's return.
func (j *jobState) finish(r jobResult, now time.Time) {
	j.finished = true
	j.err = r.err
	if j.ended.IsZero() {
		j.ended = now
	}
	if r.report != nil && r.report != j.report {
		j.applyReport(r.report)
	}
}

// refresh recomputes the aggregates shown in the run screen's header.
func (j *jobState) refresh() {
	clear(j.counts)
	j.doneBytes, j.allBytes, j.rate, j.tornDown = 0, 0, 0, 0
	j.longest = 4
	// Count the known states in an array and only then in the map: a map
	// update per host was most of the cost of a batch on a large fleet.
	var known [rankedStates]int
	for _, h := range j.hosts {
		j.longest = max(j.longest, h.width)
		if r := stateRank(h.state); r < len(known) {
			known[r]++
		} else {
			j.counts[h.state]++
		}
		if h.tornDown {
			j.tornDown++
		}
		if h.state == orchestrator.HostFailed {
			continue // its bytes will not come
		}
		j.doneBytes += h.done(j.info.Size)
		j.allBytes += h.total(j.info.Size)
		if !h.state.Terminal() {
			j.rate += h.prog.Rate
		}
	}
	for r, n := range known {
		if n > 0 {
			j.counts[rankedState(r)] = n
		}
	}
}

// eta estimates the time until every active host has the image.
func (j *jobState) eta() (time.Duration, bool) {
	left := j.allBytes - j.doneBytes
	if j.rate < 1 || left <= 0 {
		return 0, false
	}
	return time.Duration(float64(left) / j.rate * float64(time.Second)), true
}

// elapsed is the job's running time.
func (j *jobState) elapsed(now time.Time) time.Duration {
	if !j.began {
		return 0
	}
	if !j.ended.IsZero() {
		return j.ended.Sub(j.started)
	}
	return now.Sub(j.started)
}

// running reports whether Engine.Run has not returned yet.
func (j *jobState) running() bool { return j != nil && !j.finished }

// failedHosts are the hosts to retry: those that did not end done.
func (j *jobState) failedHosts() []string {
	if j.report != nil {
		return j.report.Failed()
	}
	var out []string
	for _, h := range j.hosts {
		if h.state != orchestrator.HostDone {
			out = append(out, h.name)
		}
	}
	return out
}

// stateRank orders hosts for "sort by state": trouble first, then the
// furthest along, finished last.
func stateRank(s orchestrator.HostState) int {
	switch s {
	case orchestrator.HostFailed:
		return 0
	case orchestrator.HostImporting:
		return 1
	case orchestrator.HostDownloading:
		return 2
	case orchestrator.HostChecking:
		return 3
	case orchestrator.HostUploading:
		return 4
	case orchestrator.HostConnecting:
		return 5
	case orchestrator.HostPending:
		return 6
	case orchestrator.HostCancelled:
		return 7
	case orchestrator.HostDone:
		return 8
	default:
		return rankedStates
	}
}

// rankedStates is how many states stateRank ranks, 0 to rankedStates-1;
// it ranks any other state rankedStates.
const rankedStates = 9

// rankedState is the state stateRank ranks r, for r < rankedStates.
func rankedState(r int) orchestrator.HostState {
	switch r {
	case 0:
		return orchestrator.HostFailed
	case 1:
		return orchestrator.HostImporting
	case 2:
		return orchestrator.HostDownloading
	case 3:
		return orchestrator.HostChecking
	case 4:
		return orchestrator.HostUploading
	case 5:
		return orchestrator.HostConnecting
	case 6:
		return orchestrator.HostPending
	case 7:
		return orchestrator.HostCancelled
	default:
		return orchestrator.HostDone
	}
}

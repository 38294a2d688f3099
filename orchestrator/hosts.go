package orchestrator

import (
	"sort"
	"sync"
	"time"
)

// hostBook is the engine's record of every host in a job: state, progress
// and outcome. It emits an event on every change and builds the report.
type hostBook struct {
	mu    sync.Mutex
	emit  func(Event)
	now   func() time.Time
	hosts map[string]*hostRecord
	// changed is closed and replaced whenever a host reaches a terminal state.
	changed chan struct{}
	// lastByte is when some host last received a byte (the book's start
	// until one did): the stall watchdog's sign that the swarm moves.
	lastByte time.Time
}

type hostRecord struct {
	name     string
	state    HostState
	err      string
	start    time.Time
	end      time.Time
	progress *HostProgress
	imageID  string
	nodeFrom string
	runtime  string
	// unverified: its image ID is not checked against the bastion's.
	unverified bool
	// advanced is when the host last received a byte or changed state;
	// entered when it entered its state; complete when its progress first
	// showed every layer in (zero until then).
	advanced time.Time
	entered  time.Time
	complete time.Time
	// heard is when the host's node last sent a line (zero before its
	// first): it sends one at least every jobspec.ReportEvery.
	heard time.Time
}

func newHostBook(names []string, now func() time.Time, emit func(Event)) *hostBook {
	t := now()
	b := &hostBook{emit: emit, now: now, hosts: map[string]*hostRecord{}, changed: make(chan struct{}), lastByte: t}
	for _, n := range names {
		b.hosts[n] = &hostRecord{name: n, state: HostPending, start: t}
	}
	return b
}

// set moves a host to state s. A terminal state is final: later changes are
// ignored, so a late event cannot turn a failed host into a done one.
func (b *hostBook) set(host string, s HostState, msg string) {
	b.mu.Lock()
	r := b.hosts[host]
	if r == nil || r.state.Terminal() || (r.state == s && msg == "") {
		b.mu.Unlock()
		return
	}
	if r.state != s {
		r.entered = b.now()
	}
	r.state = s
	r.advanced = b.now()
	if s == HostFailed || s == HostCancelled {
		r.err = msg
	}
	if s.Terminal() {
		r.end = b.now()
		close(b.changed)
		b.changed = make(chan struct{})
	}
	b.mu.Unlock()
	b.emit(Event{Kind: EventHostState, Host: host, State: s, Message: msg})
}

// restart moves a host back to connecting for a new attempt after its SSH
// connection was lost (fleetStep.runHost), unless it already finished. The
// lost attempt's progress is dropped, so that the watchdog judges the new
// node on its own bytes.
func (b *hostBook) restart(host string) {
	b.mu.Lock()
	if r := b.hosts[host]; r != nil && !r.state.Terminal() {
		r.progress, r.complete, r.heard = nil, time.Time{}, time.Time{}
	}
	b.mu.Unlock()
	b.set(host, HostConnecting, "")
}

// fail marks a host failed with err's text, unless it already finished.
func (b *hostBook) fail(host string, err error) { b.set(host, HostFailed, err.Error()) }

func (b *hostBook) state(host string) HostState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.hosts[host]; r != nil {
		return r.state
	}
	return ""
}

// heardFrom records that the host's node sent a line now.
func (b *hostBook) heardFrom(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.hosts[host]; r != nil {
		r.heard = b.now()
	}
}

// progress records a node's progress, matched to the job's layers
// (layerMatcher).
func (b *hostBook) progress(host string, hp *HostProgress) {
	b.mu.Lock()
	if r := b.hosts[host]; r != nil {
		if r.progress == nil || hp.Done > r.progress.Done {
			r.advanced = b.now()
			if hp.Done > 0 {
				b.lastByte = r.advanced
			}
		}
		if r.complete.IsZero() && hp.Total > 0 && hp.Done >= hp.Total {
			r.complete = b.now()
		}
		r.progress = hp
	}
	b.mu.Unlock()
	b.emit(Event{Kind: EventHostProgress, Host: host, Progress: hp})
}

// setUnverified records that the host's image ID is checked against
// nothing (registry mode).
func (b *hostBook) setUnverified(host string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.hosts[host]; r != nil {
		r.unverified = true
	}
}

func (b *hostBook) setImageID(host, id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.hosts[host]; r != nil {
		r.imageID = id
	}
}

// overdue says, for every host stuck in its state longer than limits
// allow, why (see deadlines.overdue). Hosts are named in order.
func (b *hostBook) overdue(l deadlines) ([]string, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var names []string
	errs := map[string]error{}
	now := b.now()
	for n, r := range b.hosts {
		if err := l.overdue(r, now, b.lastByte); err != nil {
			names = append(names, n)
			errs[n] = err
		}
	}
	sort.Strings(names)
	out := make([]error, len(names))
	for i, n := range names {
		out[i] = errs[n]
	}
	return names, out
}

// waitAll blocks until every host is in a terminal state or done closes.
func (b *hostBook) waitAll(done <-chan struct{}) bool {
	for {
		b.mu.Lock()
		ch, all := b.changed, true
		for _, r := range b.hosts {
			if !r.state.Terminal() {
				all = false
				break
			}
		}
		b.mu.Unlock()
		if all {
			return true
		}
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}

// cancelRest marks every host that has not finished as cancelled.
func (b *hostBook) cancelRest(reason string) {
	b.mu.Lock()
	var names []string
	for n, r := range b.hosts {
		if !r.state.Terminal() {
			names = append(names, n)
		}
	}
	b.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		b.set(n, HostCancelled, reason)
	}
}

// setInfo records what the probe learned of the host and tells the
// consumers.
func (b *hostBook) setInfo(host string, info HostInfo) {
	b.mu.Lock()
	if r := b.hosts[host]; r != nil {
		r.runtime = info.Runtime
	}
	b.mu.Unlock()
	b.emit(Event{Kind: EventHostInfo, Host: host, Info: &info})
}

// setNodeFrom records where the host's node binary came from.
func (b *hostBook) setNodeFrom(host, from string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r := b.hosts[host]; r != nil {
		r.nodeFrom = from
	}
}

// missing is the bytes of the layers that at least one host reported it
// lacked (not skipped), each layer counted once.
func (b *hostBook) missing() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	lacked := map[string]int64{}
	for _, r := range b.hosts {
		if r.progress == nil {
			continue
		}
		for _, l := range r.progress.Layers {
			if !l.Skipped {
				lacked[l.Digest] = l.Total
			}
		}
	}
	var n int64
	for _, size := range lacked {
		n += size
	}
	return n
}

// results lists each host's outcome, sorted by name.
func (b *hostBook) results() []HostResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]HostResult, 0, len(b.hosts))
	for _, r := range b.hosts {
		hr := HostResult{Host: r.name, State: r.state, Error: r.err, ImageID: r.imageID, NodeFrom: r.nodeFrom, Runtime: r.runtime,
			Unverified: r.unverified && r.state == HostDone}
		if !r.state.Terminal() {
			hr.State = HostCancelled
		}
		end := r.end
		if end.IsZero() {
			end = b.now()
		}
		hr.Duration = end.Sub(r.start)
		if p := r.progress; p != nil {
			hr.FromPeers, hr.FromSeeder = p.FromPeers, p.FromSeeder
			for _, l := range p.Layers {
				if l.Skipped {
					hr.LayersSkipped++
				}
			}
		}
		out = append(out, hr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

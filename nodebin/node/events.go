package node

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// emitter writes events as JSON lines, one writer at a time.
type emitter struct {
	mu     sync.Mutex
	enc    *jobspec.Encoder
	broken func(error) // called once when stdout fails
	failed bool
	last   time.Time // when the last event was written
}

func newEmitter(w io.Writer, broken func(error)) *emitter {
	return &emitter{enc: jobspec.NewEncoder(w), broken: broken}
}

func (e *emitter) emit(ev jobspec.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.failed {
		return
	}
	ev.Time = time.Now().UTC()
	e.last = ev.Time
	if err := e.enc.Encode(ev); err != nil {
		e.failed = true
		e.broken(err)
	}
}

// alive emits jobspec.EventAlive when nothing was emitted for
// jobspec.ReportEvery before now, so that the bastion hears a node that has
// nothing new to say.
func (e *emitter) alive(now time.Time) {
	e.mu.Lock()
	quiet := !e.last.IsZero() && now.Sub(e.last) >= jobspec.ReportEvery
	e.mu.Unlock()
	if quiet {
		e.emit(jobspec.Event{Kind: jobspec.EventAlive})
	}
}

func (e *emitter) state(s jobspec.State, msg string) {
	e.emit(jobspec.Event{Kind: jobspec.EventState, State: s, Message: msg})
}

func (e *emitter) fail(msg string) {
	e.emit(jobspec.Event{Kind: jobspec.EventError, State: jobspec.StateFailed, Message: msg})
}

// progress is the job's transfer as reported in progress events.
type progress struct {
	mu      sync.Mutex
	layers  []jobspec.LayerProgress // the job's layers in image order
	stats   func() jobspec.Progress // the swarm's, once it runs
	pull    *dockerimage.PullProgress
	digests []string // registry mode: full digests to match short IDs
	done    bool     // the image is in place

	lastBytes int64 // registry mode rate
	lastAt    time.Time

	// sendMu orders progress events: the ticker's and the last one
	// before done. sent is the last one emitted.
	sendMu sync.Mutex
	sent   *jobspec.Progress
}

// setLayers lists the job's layers, the first present ones as skipped.
func (p *progress) setLayers(layers []jobspec.Layer, present int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.layers = nil
	for i, l := range layers {
		lp := jobspec.LayerProgress{Digest: l.Digest, Total: l.Size}
		if i < present {
			lp.Done, lp.Skipped = l.Size, true
		}
		p.layers = append(p.layers, lp)
	}
}

func (p *progress) setStats(f func() jobspec.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats = f
}

func (p *progress) setPull(pp *dockerimage.PullProgress, layers []jobspec.Layer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pull = pp
	for _, l := range layers {
		p.digests = append(p.digests, l.Digest)
	}
}

// layerDone marks the layers with this digest as complete.
func (p *progress) layerDone(digest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.layers {
		if p.layers[i].Digest == digest {
			p.layers[i].Done = p.layers[i].Total
		}
	}
}

func (p *progress) setDone() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done = true
}

func (p *progress) isDone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// snapshot returns the progress now, or nil while nothing is known.
func (p *progress) snapshot(now time.Time) *jobspec.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pull != nil {
		return p.pullSnapshot(now)
	}
	if p.layers == nil {
		return nil
	}
	var out jobspec.Progress
	if p.stats != nil {
		out = p.stats()
	}
	done := map[string]int64{}
	for _, l := range out.Layers {
		done[l.Digest] = l.Done
	}
	out.Layers = make([]jobspec.LayerProgress, len(p.layers))
	for i, l := range p.layers {
		if d, ok := done[l.Digest]; ok && !l.Skipped {
			l.Done = max(l.Done, d)
		}
		out.Layers[i] = l
	}
	return &out
}

func (p *progress) pullSnapshot(now time.Time) *jobspec.Progress {
	var out jobspec.Progress
	var bytes int64
	for _, l := range p.pull.Snapshot() {
		digest := l.ID
		for _, d := range p.digests {
			if strings.HasPrefix(strings.TrimPrefix(d, "sha256:"), l.ID) {
				digest = d
			}
		}
		out.Layers = append(out.Layers, jobspec.LayerProgress{Digest: digest, Done: l.Done, Total: l.Total, Skipped: l.Skipped})
		bytes += l.Done
	}
	if dt := now.Sub(p.lastAt).Seconds(); !p.lastAt.IsZero() && dt > 0 {
		out.Rate = float64(bytes-p.lastBytes) / dt
	}
	p.lastBytes, p.lastAt = bytes, now
	return &out
}

// doneProgressEvery is how often a node whose image is in place looks at
// its transfer (it only seeds then): a progress event goes out only when
// something changed, and once done it ticks at this pace rather than the
// job's progress period. Every tick wakes the process: on the lab's
// machine a wakeup of an idle Go process costs about 0.1 ms of CPU, and
// at 100 hosts the done nodes' ticks add up.
const doneProgressEvery = 2 * time.Second

// reportProgress emits a progress event at a tick when the transfer changed
// since the last event, and an alive event when no event went out for
// jobspec.ReportEvery, until ctx ends or the returned stop is called.
func (j *job) reportProgress(ctx context.Context) (stop func()) {
	every := j.spec.ProgressEvery.Or(jobspec.DefaultProgressEvery)
	ticks, stopTicks := j.opts.Ticks(every)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() { stopTicks() }()
		slow := every >= doneProgressEvery
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-ticks:
				j.sendProgress(now)
				j.ev.alive(now)
				if !slow && j.prog.isDone() {
					slow = true
					stopTicks()
					ticks, stopTicks = j.opts.Ticks(doneProgressEvery)
				}
			}
		}
	})
	return sync.OnceFunc(func() { cancel(); wg.Wait() })
}

// sendProgress emits a progress event when the transfer changed since the
// last one. The done step calls it too, so the bastion learns every
// layer's outcome (skipped or received) even from a transfer that ended
// between two ticks.
func (j *job) sendProgress(now time.Time) {
	p := j.prog
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	cur := p.snapshot(now)
	if cur == nil || !progressChanged(p.sent, cur) {
		return
	}
	p.sent = cur
	j.ev.emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: cur})
}

// progressChanged tells whether b says more than a: a byte moved, a peer
// came or went, or the rate fell to zero or rose from it.
func progressChanged(a, b *jobspec.Progress) bool {
	if a == nil {
		return true
	}
	return !slices.Equal(a.Layers, b.Layers) || a.Peers != b.Peers ||
		a.FromSeeder != b.FromSeeder || a.FromPeers != b.FromPeers || a.Uploaded != b.Uploaded ||
		(a.Rate == 0) != (b.Rate == 0)
}

package tui

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/layercast/layercast/orchestrator"
)

// eventQueue is the Sink handed to the engine. Emit never blocks on the
// screen: events wait here until the model drains them in one batch. A
// progress snapshot replaces the host's previous one still waiting, so the
// queue stays small however slow the screen is.
type eventQueue struct {
	mu       sync.Mutex
	pending  []orchestrator.Event
	progress map[string]int // host -> index in pending of its progress event
	seeder   int            // index in pending of the seeder event, or -1
	result   *jobResult
	notify   chan struct{} // capacity 1: "something is pending"
	last     time.Time     // when the last batch was taken
}

// jobResult is what Engine.Run returned.
type jobResult struct {
	report *orchestrator.Report
	err    error
}

func newEventQueue() *eventQueue {
	return &eventQueue{
		progress: make(map[string]int),
		seeder:   -1,
		notify:   make(chan struct{}, 1),
	}
}

// Emit implements orchestrator.Sink.
func (q *eventQueue) Emit(e orchestrator.Event) {
	q.mu.Lock()
	switch {
	case e.Kind == orchestrator.EventHostProgress && e.Progress != nil:
		if i, ok := q.progress[e.Host]; ok {
			q.pending[i] = e
			break
		}
		q.progress[e.Host] = len(q.pending)
		q.pending = append(q.pending, e)
	case e.Kind == orchestrator.EventSeeder && e.Seeder != nil:
		if q.seeder >= 0 {
			q.pending[q.seeder] = e
			break
		}
		q.seeder = len(q.pending)
		q.pending = append(q.pending, e)
	default:
		q.pending = append(q.pending, e)
	}
	q.mu.Unlock()
	q.wake()
}

// finish records the engine's return; it comes after every event.
func (q *eventQueue) finish(r jobResult) {
	q.mu.Lock()
	q.result = &r
	q.mu.Unlock()
	q.wake()
}

func (q *eventQueue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take removes and returns everything pending.
func (q *eventQueue) take(now time.Time) ([]orchestrator.Event, *jobResult) {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.pending
	q.pending = nil
	clear(q.progress)
	q.seeder = -1
	q.last = now
	res := q.result
	q.result = nil
	return evs, res
}

func (q *eventQueue) lastTake() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.last
}

// jobEventsMsg carries one batch of a job's events to the model.
type jobEventsMsg struct {
	seq    int
	events []orchestrator.Event
	result *jobResult // set once, with the last batch
}

// waitEvents waits until the queue has something, no sooner than interval
// after the previous batch, and returns it as a message. It runs as a
// tea.Cmd, off the Update goroutine.
//
// It does not stop on the job's context: after a cancel the engine still
// delivers its teardown events and its result.
func waitEvents(q *eventQueue, seq int, interval time.Duration) tea.Cmd {
	return func() tea.Msg {
		<-q.notify
		if wait := interval - time.Since(q.lastTake()); wait > 0 {
			time.Sleep(wait)
		}
		evs, res := q.take(time.Now())
		return jobEventsMsg{seq: seq, events: evs, result: res}
	}
}

// runEngine runs the engine as a tea.Cmd and reports its return through the
// queue, after all of its events.
func runEngine(ctx context.Context, eng Engine, opts orchestrator.Options, q *eventQueue, log *slog.Logger) tea.Cmd {
	return func() (msg tea.Msg) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("engine panicked", "panic", p, "stack", string(debug.Stack()))
				q.finish(jobResult{err: fmt.Errorf("engine failed unexpectedly: %v (stack in the log)", p)})
			}
		}()
		rep, err := eng.Run(ctx, opts, q)
		q.finish(jobResult{report: rep, err: err})
		return nil
	}
}

// tickMsg refreshes elapsed times and ETA while a job runs.
type tickMsg struct{ seq int }

func tick(seq int) tea.Cmd {
	return tea.Tick(time.Second, func(time.Time) tea.Msg { return tickMsg{seq: seq} })
}

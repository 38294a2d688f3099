package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// step is one stage of a pipeline over T: the whole job (T is *job) or one
// host's part of it (T is *hostRun). Steps run in order; every step whose
// Run started is cleaned up in reverse order, on success, failure and
// cancel.
type step[T any] interface {
	Title() string
	Run(ctx context.Context, x T) error
}

// cleaner is a step that leaves something to undo. Cleanup must cope with
// a Run that failed halfway.
type cleaner[T any] interface {
	Cleanup(ctx context.Context, x T)
}

// cleanupTimeout bounds the whole teardown once the job's context is gone.
const cleanupTimeout = 60 * time.Second

// pipeline runs steps over x and remembers which ones started, so that
// cleanup undoes exactly those.
type pipeline[T any] struct {
	x     T
	steps []step[T]
	// starting, when set, is told of each step as it starts.
	starting func(step[T])
	started  []step[T]
}

// run runs the steps in order until one fails or ctx ends. It returns the
// step that failed (nil when ctx ended between steps) and its error.
func (p *pipeline[T]) run(ctx context.Context) (step[T], error) {
	for _, s := range p.steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if p.starting != nil {
			p.starting(s)
		}
		p.started = append(p.started, s)
		if err := s.Run(ctx, p.x); err != nil {
			return s, err
		}
	}
	return nil, nil
}

// cleanup cleans up the started steps in reverse order. ctx must be a
// fresh one: the run's may already be cancelled.
func (p *pipeline[T]) cleanup(ctx context.Context) {
	for i := len(p.started) - 1; i >= 0; i-- {
		if c, ok := p.started[i].(cleaner[T]); ok {
			c.Cleanup(ctx, p.x)
		}
	}
	p.started = nil
}

// runSteps runs the job's steps and cleans up the started ones in reverse,
// with a fresh context bounded by cleanupTimeout. An error names the step.
func runSteps(ctx context.Context, j *job, steps []step[*job]) error {
	p := &pipeline[*job]{x: j, steps: steps, starting: func(s step[*job]) {
		j.emit(Event{Kind: EventStep, Message: s.Title()})
		j.log.Debug("step", slog.String("title", s.Title()))
	}}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		p.cleanup(cctx)
	}()
	s, err := p.run(ctx)
	if err != nil && s != nil {
		return fmt.Errorf("%s: %w", s.Title(), err)
	}
	return err
}

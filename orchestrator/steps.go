package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// step is one stage of a job. Steps run in order; every step whose Run
// started is cleaned up in reverse order, on success, failure and cancel.
type step interface {
	Title() string
	Run(ctx context.Context, j *job) error
}

// cleaner is a step that leaves something to undo.
type cleaner interface {
	Cleanup(ctx context.Context, j *job)
}

// cleanupTimeout bounds the whole teardown once the job's context is gone.
const cleanupTimeout = 60 * time.Second

// runSteps runs steps in order and cleans up the started ones in reverse.
// Cleanup gets a fresh context: the job's may already be cancelled.
func runSteps(ctx context.Context, j *job, steps []step) error {
	var started []step
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		for i := len(started) - 1; i >= 0; i-- {
			if c, ok := started[i].(cleaner); ok {
				c.Cleanup(cctx, j)
			}
		}
	}()
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		j.emit(Event{Kind: EventStep, Message: s.Title()})
		j.log.Debug("step", slog.String("title", s.Title()))
		started = append(started, s)
		if err := s.Run(ctx, j); err != nil {
			return fmt.Errorf("%s: %w", s.Title(), err)
		}
	}
	return nil
}

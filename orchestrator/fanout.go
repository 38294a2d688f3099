package orchestrator

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/semaphore"
)

// fanOut is how work reaches many hosts: every host runs in its own
// goroutine, at most a host limit of them hold a slot at once, and among
// them at most an upload limit send a node binary at once. A slow host
// holds only its own slot: the next host starts as soon as any slot frees,
// there are no batches.
type fanOut struct {
	hosts   *semaphore.Weighted
	uploads *semaphore.Weighted
}

// newFanOut returns a fan-out with the given limits (at least 1 each).
func newFanOut(hosts, uploads int) *fanOut {
	return &fanOut{
		hosts:   semaphore.NewWeighted(int64(max(hosts, 1))),
		uploads: semaphore.NewWeighted(int64(max(uploads, 1))),
	}
}

// each calls fn for hosts 0..n-1 and waits for all of them; errs[i] is
// host i's error. Host i holds a slot from before fn starts until fn calls
// release or returns. Once ctx ends no further host starts: those get ctx's
// error without fn being called.
func (f *fanOut) each(ctx context.Context, n int, fn func(ctx context.Context, i int, release func()) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		err := f.hosts.Acquire(ctx, 1)
		if err == nil {
			if err = ctx.Err(); err != nil {
				f.hosts.Release(1)
			}
		}
		if err != nil {
			for k := i; k < n; k++ {
				errs[k] = err
			}
			break
		}
		release := sync.OnceFunc(func() { f.hosts.Release(1) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer release()
			errs[i] = fn(ctx, i, release)
		}()
	}
	wg.Wait()
	return errs
}

// upload runs send while holding an upload slot.
func (f *fanOut) upload(ctx context.Context, send func() error) error {
	if err := f.uploads.Acquire(ctx, 1); err != nil {
		return fmt.Errorf("upload node binary: wait for an upload slot: %w", err)
	}
	defer f.uploads.Release(1)
	return send()
}

package fleet

import (
	"context"
	"errors"
	"sync"
)

// Result is the outcome of ForEach's work on one host.
type Result[T any] struct {
	Host  string
	Value T
	Err   error // nil, or the error of fn, not yet naming the host
}

// ForEach calls fn for every host, at most limit at a time (limit < 1: all
// at once), and returns the results in the order of hosts. A slow host
// holds only its own slot: the next host starts as soon as any slot frees,
// there are no batches. Once ctx ends no further host starts; those get
// ctx's error.
func ForEach[T any](ctx context.Context, hosts []string, limit int, fn func(ctx context.Context, host string) (T, error)) []Result[T] {
	if limit < 1 || limit > len(hosts) {
		limit = len(hosts)
	}
	results := make([]Result[T], len(hosts))
	slots := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, h := range hosts {
		results[i].Host = h
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			results[i].Err = ctx.Err()
			continue
		}
		if err := ctx.Err(); err != nil {
			<-slots
			results[i].Err = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			results[i].Value, results[i].Err = fn(ctx, h)
		}()
	}
	wg.Wait()
	return results
}

// HostError is an error on one host; it names the host once.
type HostError struct {
	Host string
	Err  error
}

func (e *HostError) Error() string { return e.Host + ": " + e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// Errors joins the failed results into one error, each a *HostError; nil
// when every host succeeded.
func Errors[T any](results []Result[T]) error {
	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, &HostError{Host: r.Host, Err: r.Err})
		}
	}
	return errors.Join(errs...)
}

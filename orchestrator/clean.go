package orchestrator

import (
	"context"
	"errors"
	"fmt"

	"github.com/layercast/layercast/orchestrator/hostops"
)

// HostClean is what Clean removed from one host.
type HostClean struct {
	Host string `json:"host"`
	// WorkDirs are the work dirs of ended jobs removed; Live those of
	// jobs still running, left alone.
	WorkDirs []string `json:"work_dirs,omitempty"`
	Live     []string `json:"live,omitempty"`
	// TempImages are temporary images of ended jobs removed.
	TempImages []string `json:"temp_images,omitempty"`
	// NodeCache are the node binaries removed from the host's node cache.
	NodeCache []string `json:"node_cache,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// Clean removes from every selected host what layercast keeps or left
// there: the node binaries in the node cache (unless keepNodeCache), and
// the work dirs, nodes and temporary images of jobs that are over. What
// belongs to a job still running is left alone. Errors that are the
// operator's (inventory, selection) wrap ErrConfig; a host's own error is
// in its HostClean.
func (e *Engine) Clean(ctx context.Context, opts Options, keepNodeCache bool) ([]HostClean, error) {
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, configErr(err)
	}
	in, err := e.reachable(opts)
	if err != nil {
		return nil, err
	}
	out := make([]HostClean, len(in.hosts))
	errs := newFanOut(opts.Concurrency, opts.UploadConcurrency).each(ctx, len(in.hosts), func(ctx context.Context, i int, _ func()) error {
		h := in.hosts[i]
		hc := &out[i]
		conn, err := in.dialer.Dial(ctx, h)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close()
		limit := opts.SetupTimeout
		var facts hostops.Facts
		err = within(ctx, limit, func(ctx context.Context) (err error) {
			facts, err = conn.Probe(ctx, false)
			return err
		})
		if err != nil {
			return fmt.Errorf("probe host: %w", err)
		}
		var errs []error
		var stale []hostops.StaleDir
		errs = append(errs, within(ctx, limit, func(ctx context.Context) (err error) {
			stale, err = conn.CleanStale(ctx, "", facts.WorkBases)
			return err
		}))
		for _, s := range stale {
			switch {
			case s.Live:
				hc.Live = append(hc.Live, s.Dir)
			case s.Removed:
				hc.WorkDirs = append(hc.WorkDirs, s.Dir)
			default:
				errs = append(errs, fmt.Errorf("remove %s: %s", s.Dir, s.Error))
			}
		}
		if facts.Usable() == nil {
			errs = append(errs, within(ctx, limit, func(ctx context.Context) (err error) {
				hc.TempImages, err = conn.RemoveTempImages(ctx, "", false, facts.WorkBases)
				return err
			}))
		}
		if !keepNodeCache && facts.CacheHome != "" {
			errs = append(errs, within(ctx, limit, func(ctx context.Context) (err error) {
				hc.NodeCache, err = conn.RemoveNodeCache(ctx, hostops.NodeCacheDir(facts.CacheHome))
				return err
			}))
		}
		return errors.Join(errs...)
	})
	for i, err := range errs {
		out[i].Host = in.hosts[i].Name
		if err != nil {
			out[i].Error = err.Error()
		}
		out[i].makeSafe()
	}
	return out, nil
}

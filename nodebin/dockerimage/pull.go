package dockerimage

import (
	"context"
	"fmt"
	"sync"

	"github.com/docker/docker/api/types/image"
)

// PullLayer is one layer of a pull as the daemon reports it.
type PullLayer struct {
	// ID is the short ID the daemon's progress stream uses (12 hex digits
	// of the layer's blob digest).
	ID          string
	Done, Total int64
	// Skipped: the daemon already had it ("Already exists").
	Skipped bool
}

// PullProgress collects a pull's per-layer progress; safe for concurrent use.
type PullProgress struct {
	mu     sync.Mutex
	layers []PullLayer
	index  map[string]int
}

// Snapshot returns the layers seen so far, in order of first appearance.
func (p *PullProgress) Snapshot() []PullLayer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PullLayer(nil), p.layers...)
}

func (p *PullProgress) update(m jsonMessage) {
	if m.ID == "" || len(m.ID) != 12 {
		return // "Pulling from", "Digest:", "Status:" lines
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.index == nil {
		p.index = map[string]int{}
	}
	i, ok := p.index[m.ID]
	if !ok {
		i = len(p.layers)
		p.index[m.ID] = i
		p.layers = append(p.layers, PullLayer{ID: m.ID})
	}
	l := &p.layers[i]
	switch m.Status {
	case "Downloading":
		l.Done, l.Total = m.ProgressDetail.Current, m.ProgressDetail.Total
	case "Download complete", "Verifying Checksum", "Extracting", "Pull complete":
		if l.Total == 0 && m.ProgressDetail.Total > 0 {
			l.Total = m.ProgressDetail.Total
		}
		l.Done = l.Total
	case "Already exists":
		l.Skipped = true
	}
}

// Pull pulls ref from its registry with the given X-Registry-Auth value,
// recording progress in p, and returns the first error of the pull.
func (d *Daemon) Pull(ctx context.Context, ref, auth string, p *PullProgress) error {
	rc, err := d.api.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer rc.Close()
	if err := readMessages(rc, p.update); err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

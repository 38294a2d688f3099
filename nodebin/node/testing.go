package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// FakeLeecher stands in for the swarm client: it "downloads" layers by
// writing their bytes from Files into its dir, one by one.
type FakeLeecher struct {
	Dir string
	// Files holds the content served per digest.
	Files map[string][]byte
	// Order is the completion order by digest; nil means the order asked.
	Order []string
	// Gate, when set, must be received from before each layer completes.
	Gate chan struct{}
	// Err is returned after the layers in Order are delivered.
	Err error
	// Uploaded is reported as the bytes served to peers.
	Uploaded atomic.Int64

	mu        sync.Mutex
	requested []jobspec.Layer
	done      map[string]bool
	closed    bool
}

// Download delivers the layers as described by the fake's fields.
func (f *FakeLeecher) Download(ctx context.Context, layers []jobspec.Layer, onDone func(jobspec.Layer, string)) error {
	f.mu.Lock()
	f.requested = append(f.requested, layers...)
	if f.done == nil {
		f.done = map[string]bool{}
	}
	byDigest := map[string]jobspec.Layer{}
	order := f.Order
	for _, l := range layers {
		byDigest[l.Digest] = l
		if f.Order == nil {
			order = append(order, l.Digest)
		}
	}
	f.mu.Unlock()
	for _, d := range order {
		l, ok := byDigest[d]
		if !ok {
			continue
		}
		if f.Gate != nil {
			select {
			case <-f.Gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		path := filepath.Join(f.Dir, strings.TrimPrefix(d, "sha256:"))
		if err := os.WriteFile(path, f.Files[d], 0o644); err != nil {
			return err
		}
		f.mu.Lock()
		f.done[d] = true
		f.mu.Unlock()
		onDone(l, path)
	}
	if f.Err != nil {
		return f.Err
	}
	return ctx.Err()
}

// Stats reports every requested layer as done or not started.
func (f *FakeLeecher) Stats() jobspec.Progress {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := jobspec.Progress{Peers: 1, Uploaded: f.Uploaded.Load()}
	for _, l := range f.requested {
		lp := jobspec.LayerProgress{Digest: l.Digest, Total: l.Size}
		if f.done[l.Digest] {
			lp.Done = l.Size
			p.FromSeeder += l.Size
		}
		p.Layers = append(p.Layers, lp)
	}
	return p
}

// Close marks the fake closed.
func (f *FakeLeecher) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return fmt.Errorf("swarm client closed twice")
	}
	f.closed = true
	return nil
}

// Requested returns the layers Download was asked for.
func (f *FakeLeecher) Requested() []jobspec.Layer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]jobspec.Layer(nil), f.requested...)
}

// Closed reports whether Close was called.
func (f *FakeLeecher) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// FakeDocker is a FakeDaemon with the Close of a client.
type FakeDocker struct {
	*dockerimage.FakeDaemon
	mu     sync.Mutex
	closed bool
}

func (f *FakeDocker) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// Closed reports whether Close was called.
func (f *FakeDocker) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// SpecFor returns a valid p2p spec for img, with work dir dir.
func SpecFor(img dockerimage.TestImage, ref, dir string) *jobspec.Spec {
	s := &jobspec.Spec{
		Version:  jobspec.Version,
		JobID:    "job1",
		Host:     "h01",
		Image:    ref,
		ImageID:  img.ID,
		Config:   img.Config,
		Announce: "http://127.0.0.1:1/announce?token=t",
		WorkDir:  dir,
	}
	for _, l := range img.Layers {
		s.Layers = append(s.Layers, jobspec.Layer{
			DiffID: l.DiffID, ChainID: l.ChainID, Digest: l.Digest,
			Size: int64(len(l.File)), MediaType: "tar", Torrent: []byte("d4:infod6:lengthi1eee"),
		})
	}
	return s
}

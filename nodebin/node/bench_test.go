package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/dockerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
)

// pacedLeecher hands out pre-written layer files at the times a link of
// rate bytes/s would finish them: inOrder fetches the layers one after the
// other, otherwise all at once, sharing the rate.
type pacedLeecher struct {
	paths   map[string]string
	rate    float64
	inOrder bool
}

func (p *pacedLeecher) Download(ctx context.Context, layers []jobspec.Layer, onDone func(jobspec.Layer, string)) error {
	start := time.Now()
	left := map[string]float64{}
	for _, l := range layers {
		left[l.Digest] = float64(l.Size)
	}
	var elapsed float64
	for len(left) > 0 {
		// The next layer to finish and when.
		var next string
		var dt float64
		active := len(left)
		for _, l := range layers {
			rem, ok := left[l.Digest]
			if !ok {
				continue
			}
			if p.inOrder {
				next, dt, active = l.Digest, rem/p.rate, 1
				break
			}
			if t := rem / (p.rate / float64(len(left))); next == "" || t < dt {
				next, dt = l.Digest, t
			}
		}
		for d := range left {
			if p.inOrder && d != next {
				continue
			}
			left[d] -= dt * p.rate / float64(active)
		}
		delete(left, next)
		elapsed += dt
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(time.Duration(elapsed * float64(time.Second))))):
		}
		for _, l := range layers {
			if l.Digest == next {
				onDone(l, p.paths[next])
			}
		}
	}
	return nil
}

func (p *pacedLeecher) Stats() jobspec.Progress { return jobspec.Progress{} }
func (p *pacedLeecher) Close() error            { return nil }

// BenchmarkNodeRealDaemon_Import measures a job from start to the done
// event for a 400 MB image of 5 layers arriving over a 50 MB/s link, into
// a real dockerd: one load at the end (serial) against loading each
// downloaded prefix while the rest downloads (overlap), with the layers
// completing one after the other (in-order) or together (parallel).
func BenchmarkNodeRealDaemon_Import(b *testing.B) {
	const layers, layerSize, rate = 5, 80 << 20, 50 << 20
	dd := dockerdtest.Start(b)
	c := dd.Client(b)
	src := b.TempDir()
	var diffIDs []string
	paths := map[string]string{}
	var sizes []int64
	for i := range layers {
		p := filepath.Join(src, fmt.Sprint(i))
		d := dockerdtest.WriteLayer(b, p, byte(i+1), layerSize)
		diffIDs = append(diffIDs, d)
		paths[d] = p
		st, _ := os.Stat(p)
		sizes = append(sizes, st.Size())
	}
	config, _ := json.Marshal(map[string]any{"os": "linux", "architecture": "amd64", "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	spec := &jobspec.Spec{Version: jobspec.Version, JobID: "bench", Image: "bench/app:1", ImageID: dockerimage.Digest(config), Config: config, Announce: "http://x/a"}
	for i, c := range jobspec.ChainIDs(diffIDs) {
		spec.Layers = append(spec.Layers, jobspec.Layer{DiffID: diffIDs[i], ChainID: c, Digest: diffIDs[i], Size: sizes[i], Torrent: []byte("x")})
	}
	for _, mode := range []struct {
		name            string
		serial, inOrder bool
	}{{"serial/in-order", true, true}, {"overlap/in-order", false, true}, {"serial/parallel", true, false}, {"overlap/parallel", false, false}} {
		b.Run(mode.name, func(b *testing.B) {
			b.SetBytes(layers * layerSize)
			for b.Loop() {
				spec.WorkDir = filepath.Join(b.TempDir(), filepath.Base(jobspec.WorkDir(spec.JobID)))
				line, _ := json.Marshal(spec)
				inR, inW := io.Pipe()
				outR, outW := io.Pipe()
				codeC := make(chan int, 1)
				go func() {
					codeC <- node.Run(b.Context(), node.Options{
						Stdin: inR, Stdout: outW,
						Docker: func(ctx context.Context, _ string) (node.DockerAPI, error) { return dockerimage.Connect(ctx, dd.Host) },
						Swarm: func(context.Context, *jobspec.Spec, string) (node.Leecher, error) {
							return &pacedLeecher{paths: paths, rate: rate, inOrder: mode.inOrder}, nil
						},
						Serial: mode.serial,
					})
					outW.Close()
				}()
				go fmt.Fprintf(inW, "%s\n", line)
				dec := jobspec.NewDecoder(outR)
				for {
					var ev jobspec.Event
					if err := dec.Decode(&ev); err != nil {
						b.Fatalf("events ended: %v", err)
					}
					if ev.Kind == jobspec.EventError {
						b.Fatal(ev.Message)
					}
					if ev.State == jobspec.StateDone {
						break
					}
				}
				b.StopTimer()
				fmt.Fprintln(inW, `{"kind":"stop"}`)
				go io.Copy(io.Discard, outR)
				if code := <-codeC; code != node.ExitOK {
					b.Fatalf("exit %d", code)
				}
				inW.Close()
				if _, err := c.ImageRemove(b.Context(), "bench/app:1", image.RemoveOptions{PruneChildren: true}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// Command layercast-node [--debug] [--serial] [--job ID] is the program the bastion uploads to each host for
// one job. It reads the job spec and then control lines on stdin, writes
// JSON-line events on stdout and logs on stderr, and exits with the codes
// of package node. It removes its work dir, itself included, on exit.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/layercast/layercast/nodebin/containerdimage"
	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
	"github.com/layercast/layercast/nodebin/swarm"
)

func main() {
	oneProc()
	// A bastion that vanished leaves stdout a broken pipe; writes must fail
	// with EPIPE (and the node clean up) instead of killing the process.
	signal.Ignore(syscall.SIGPIPE)

	debug := flag.Bool("debug", false, "log at debug level")
	serial := flag.Bool("serial", false, "load the image once at the end instead of loading layers while later ones download")
	jobID := flag.String(strings.TrimPrefix(jobspec.NodeJobFlag, "--"), "", "the job this node runs (it marks the process; the spec on stdin must name the same job)")
	flag.Parse()
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		s := <-sigs
		cancel(fmt.Errorf("signal %v", s))
	}()

	code := node.Run(ctx, node.Options{
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Log:    log,
		Docker: func(ctx context.Context, host string) (node.DockerAPI, error) {
			return dockerimage.Connect(ctx, host)
		},
		Containerd: func(ctx context.Context, spec *jobspec.Spec) (node.Runtime, error) {
			c, err := containerdimage.Connect(ctx, containerdimage.Config{
				Address:     spec.ContainerdAddress,
				Namespace:   spec.ContainerdNamespace,
				Snapshotter: spec.ContainerdSnapshotter,
				Log:         log.With("component", "containerd"),
			})
			if err != nil {
				return nil, err
			}
			return node.ContainerdRuntime(c), nil
		},
		Swarm: func(ctx context.Context, spec *jobspec.Spec, dir string) (node.Leecher, error) {
			return swarm.New(ctx, swarm.Config{
				Dir:        dir,
				Announce:   spec.Announce,
				Seeders:    spec.Seeders,
				AllowedIPs: spec.AllowedIPs,
				ListenPort: spec.ListenPort,
				PublicIP:   spec.PublicIP,
				MaxRate:    spec.MaxRate,
				Logger:     log.With("component", "swarm"),
			})
		},
		Serial: *serial,
		JobID:  *jobID,
	})
	signal.Stop(sigs)
	cancel(nil)
	os.Exit(code)
}

// oneProc runs the node's Go code on one processor (GOMAXPROCS=1) unless
// the environment sets GOMAXPROCS. A node mostly waits for the network:
// with a second processor the runtime hands every wakeup from one thread
// to another, and each thread switch costs CPU the host's own work could
// use. Measured on the lab (5 hosts, 20 MB at 3 Mbit/s, CPU of the node
// processes from /proc): a downloading node 20.1 → 16.7 ms of CPU a second
// and 224 → 178 thread switches, a done node 36–40 → 22–25 switches a
// second. One processor still moves 440–490 MB/s with the seeder in the
// same process (BenchmarkDownload1GiB -cpu 1), several times a 1 Gbit/s
// link.
func oneProc() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

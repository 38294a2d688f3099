package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"

	"github.com/docker/docker/client"
	"golang.org/x/sync/semaphore"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/fleet"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
)

// newEngine wires the real edges: the bastion's Docker daemon (DOCKER_HOST
// honoured), SSH as OpenSSH would do it, and the node binaries.
func newEngine(nodeBinDir string, log *slog.Logger) (*orchestrator.Engine, error) {
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("connect to the bastion's Docker daemon: %w", err)
	}
	dialer := func(inv *inventory.Inventory, opts orchestrator.Options) (fleet.Dialer, error) {
		return fleet.NewDialer(fleet.Config{
			KnownHostsPath:    inv.KnownHosts,
			AcceptNewHostKeys: opts.AcceptNewHostKeys,
			Uploads:           semaphore.NewWeighted(int64(max(1, opts.UploadConcurrency))),
			Logger:            log,
		})
	}
	nodes := nodeassets.Embedded()
	if nodeBinDir != "" {
		nodes = nodeassets.Dir(nodeBinDir)
	}
	return orchestrator.NewEngine(orchestrator.Deps{
		Docker: docker,
		Dialer: dialer,
		Nodes:  nodes,
		Logger: log,
	})
}

func printVersion(w io.Writer) error {
	fmt.Fprintf(w, "layercast %s", version)
	if bi, ok := debug.ReadBuildInfo(); ok {
		fmt.Fprintf(w, " (%s)", bi.GoVersion)
	}
	fmt.Fprintln(w)
	nodes := nodeassets.Embedded()
	arches := nodes.Arches()
	sort.Strings(arches)
	if len(arches) == 0 {
		fmt.Fprintln(w, "node binaries: none built in (build with `make`)")
		return nil
	}
	for _, a := range arches {
		b, err := nodes.Get(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "node binary linux/%s: %s, %.1f MB (%.1f MB compressed), sha256 %s\n", a, b.Version, float64(b.Size)/1e6, float64(len(b.Gz))/1e6, b.SHA256[:16])
	}
	return nil
}

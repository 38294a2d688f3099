package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"

	"github.com/docker/docker/client"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// newEngine wires the real edges: the bastion's Docker daemon (DOCKER_HOST
// honoured; the client connects on first use, so a bastion without a
// daemon runs jobs from registries), registries with the bastion's Docker
// config for credentials, SSH as OpenSSH would do it, and the node
// binaries.
func newEngine(nodeBinDir string, log *slog.Logger) (*orchestrator.Engine, error) {
	var docker imagecache.Docker
	if c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err != nil {
		// A DOCKER_HOST it cannot use: only the registry source works.
		log.Warn("no Docker client on the bastion; images come from registries", "err", err)
	} else {
		docker = c
	}
	dialer := func(inv *inventory.Inventory, opts orchestrator.Options) (orchestrator.Dialer, error) {
		d, err := hostops.NewDialer(openssh.Config{
			KnownHostsPath:    inv.KnownHosts,
			AcceptNewHostKeys: opts.AcceptNewHostKeys,
			ConnectTimeout:    opts.ConnectTimeout,
			Logger:            log,
		})
		if err != nil {
			return nil, err
		}
		return orchestrator.Reach[*hostops.Conn](d), nil
	}
	// A `go install` build carries no node binaries: build them on first
	// use with the local Go toolchain.
	nodes := nodeassets.Embedded().BuildMissing(nodeassets.Builder{Logger: log})
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
	v := version
	bi, ok := debug.ReadBuildInfo()
	if v == "dev" && ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version // go install: no -X main.version, but a module version
	}
	fmt.Fprintf(w, "layercast %s", v)
	if ok {
		fmt.Fprintf(w, " (%s)", bi.GoVersion)
	}
	fmt.Fprintln(w)
	nodes := nodeassets.Embedded()
	have := map[string]bool{}
	for _, a := range nodes.Arches() {
		have[a] = true
	}
	for _, a := range []string{"amd64", "arm64"} {
		if !have[a] {
			b := nodeassets.Builder{}
			fmt.Fprintf(w, "node binary linux/%s: not built in; built on first use with the local Go toolchain from %s\n", a, b.Describe())
			continue
		}
		b, err := nodes.Get(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "node binary linux/%s: %s, %.1f MB (%.1f MB compressed), sha256 %s\n", a, b.Version, float64(b.Size)/1e6, float64(len(b.Gz))/1e6, b.SHA256[:16])
	}
	return nil
}

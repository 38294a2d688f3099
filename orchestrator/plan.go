package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
)

// plan reads and checks everything the operator gave: inventory, selection
// and image. Every error wraps ErrConfig; nothing touches a host.
func (j *job) plan(ctx context.Context) error {
	if j.opts.Image == "" {
		return configErr(errors.New("no image given: name the image to distribute"))
	}
	inv, err := inventory.Load(j.opts.InventoryPath)
	if err != nil {
		return configErr(err)
	}
	hosts, err := inv.Select(j.opts.Hosts, j.opts.Groups)
	if err != nil {
		return configErr(err) // names the inventory and the host or group
	}
	if len(hosts) == 0 {
		return configErr(fmt.Errorf("%s: no hosts selected", j.opts.InventoryPath))
	}
	j.inv, j.hosts = inv, hosts
	if j.dialer, err = j.deps.Dialer(inv, j.opts); err != nil {
		return configErr(fmt.Errorf("set up SSH for %s: %w", j.opts.InventoryPath, err))
	}
	// A key file that cannot be used is the operator's to fix: say so
	// before any host is contacted.
	if kc, ok := j.dialer.(interface{ CheckKeys([]inventory.Host) error }); ok {
		if err := kc.CheckKeys(hosts); err != nil {
			return configErr(fmt.Errorf("%s: %w", j.opts.InventoryPath, err))
		}
	}

	j.mode = j.opts.Mode
	if j.mode == "" {
		j.mode = ModeP2P
	}
	if j.mode == ModeRegistry {
		// The hosts pull from the registry; the bastion's copy, when it has
		// one, only gives the image ID to check against.
		if insp, err := j.deps.Docker.ImageInspect(ctx, j.opts.Image); err == nil {
			j.log.Debug("registry mode: bastion knows the image", "id", insp.ID)
		}
		return nil
	}

	dir := j.opts.CacheDir
	if dir == "" {
		dir = j.deps.CacheDir
	}
	if dir == "" {
		if dir, err = imagecache.DefaultDir(); err != nil {
			return err
		}
	}
	j.cacheDir = dir
	cache, err := imagecache.New(dir)
	if err != nil {
		return err
	}
	im, err := cache.Prepare(ctx, j.deps.Docker, j.opts.Image, func(s string) {
		j.log.Info(s)
	})
	switch {
	case errors.Is(err, imagecache.ErrNoImage), errors.Is(err, imagecache.ErrNoLayers):
		return configErr(err)
	case err != nil:
		return fmt.Errorf("prepare image: %w", err)
	}
	j.image = im
	if j.config, err = im.Config(); err != nil {
		return err
	}
	if j.mode == ModeAuto {
		j.mode = chooseMode(im.Size(), len(hosts))
		j.log.Info("auto mode", "chose", j.mode, "size", im.Size(), "hosts", len(hosts))
	}
	return nil
}

// chooseMode is --mode auto: registry below the balance point measured by
// the testbed bench (docs/BENCHMARKS.md), P2P at or above it.
func chooseMode(size int64, hosts int) Mode {
	if size < balancePoint(hosts) {
		return ModeRegistry
	}
	return ModeP2P
}

// balancePoint is the image size below which one registry serving every
// host at once is faster than the swarm, for a cluster of n hosts.
//
// The rule is fitted to the crossovers `testbed bench` measured
// (docs/BENCHMARKS.md, 200 Mbit/s links, one 2-core machine): P2P won at
// every size from 10 MB at 5 hosts; the two modes took equal time at
// about 24 MB with 10 hosts and about 90 MB with 20 hosts. A line through
// those two crossovers,
//
//	balancePoint(n) = 6.6 MB × (n − 6.4),
//
// is at or below zero up to 6 hosts (P2P always) and rises with n, because
// on that machine the swarm's per-host setup (SSH, node upload in waves of
// --upload-concurrency) and its CPU grow with the cluster while the
// registry's time grows only with the bytes it sends. One host has nobody
// to share with: always the registry.
func balancePoint(n int) int64 {
	const mb = 1000 * 1000
	if n <= 1 {
		return math.MaxInt64
	}
	return int64(6.6 * mb * (float64(n) - 6.4))
}

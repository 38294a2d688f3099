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
// The rule interpolates the crossovers `testbed bench` measured
// (docs/BENCHMARKS.md, 200 Mbit/s links, one 2-core machine): P2P won at
// every size from 10 MB on 5 hosts; the two modes took equal time at about
// 15 MB on 10 hosts, 54 MB on 20 and 185 MB on 40. Between those points the
// balance point is linear in n; below 10 hosts it follows the 10–20 line
// down to zero at 6.15 hosts (P2P at every size up to 6 hosts); above 40 it
// keeps the 20–40 slope (6.6 MB per host). It rises with n because on that
// machine the swarm's setup (SSH, node upload 8 hosts at a time) and CPU
// grow with the cluster while the registry's time grows only with the bytes
// it sends. One host has nobody to share with: always the registry.
func balancePoint(n int) int64 {
	const mb = 1000 * 1000
	if n <= 1 {
		return math.MaxInt64
	}
	measured := [...]struct{ hosts, mb float64 }{{6.15, 0}, {10, 15}, {20, 54}, {40, 185}}
	x := float64(n)
	i := 1
	for i < len(measured)-1 && x > measured[i].hosts {
		i++
	}
	a, b := measured[i-1], measured[i]
	v := a.mb + (x-a.hosts)*(b.mb-a.mb)/(b.hosts-a.hosts)
	return int64(max(v, 0) * mb)
}

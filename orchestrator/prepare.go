package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"log/slog"
	"net"
	"time"
)

// prepared is the operator's input, checked: the hosts, how to reach them,
// the mode and the image. A job and a plan both start from it.
type prepared struct {
	opts  Options // defaults applied
	hosts []inventory.Host
	// ignored is what the inventory holds that layercast does not use
	// (inventory.Inventory.Ignored).
	ignored []string
	dialer  Dialer
	mode    Mode
	// image is nil in registry mode; config is its config JSON and
	// cacheDir the cache it lives in.
	image    *imagecache.Image
	config   []byte
	cacheDir string
	// bastionIPs are --bastion-addr's addresses, resolved on the bastion
	// (IPv4 only: the swarm speaks IPv4); empty without --bastion-addr.
	bastionIPs []string
	// expect is, in registry mode, the bastion's copy of the image that
	// the hosts' pulls are checked against; nil when the bastion has none.
	expect *expectedImage
}

// expectedImage is the bastion's copy of an image in registry mode.
type expectedImage struct {
	ID       string
	Platform imagecache.Platform
	// Config is the config JSON when the bastion exported the image
	// (--mode auto); the nodes then check the layers too.
	Config []byte
}

// idFor is the image ID a host of CPU arch must end up with, or "" when
// the bastion's copy cannot tell: another CPU pulls another image.
func (e *expectedImage) idFor(arch string) string {
	p := e.Platform
	if (p.OS == "" || p.OS == "linux") && p.Architecture == arch && p.Architecture != "arm" {
		return e.ID
	}
	return ""
}

// reachable reads the inventory, selects the hosts and sets up SSH to
// them. Every error wraps ErrConfig; nothing touches a host.
func (e *Engine) reachable(opts Options) (*prepared, error) {
	inv, err := inventory.Load(opts.InventoryPath)
	if err != nil {
		return nil, configErr(err)
	}
	hosts, err := inv.Select(opts.Hosts, opts.Groups)
	if err != nil {
		return nil, configErr(err) // names the inventory and the host or group
	}
	if len(hosts) == 0 {
		return nil, configErr(fmt.Errorf("%s: no hosts selected", opts.InventoryPath))
	}
	p := &prepared{opts: opts, hosts: hosts, mode: opts.Mode, ignored: inv.Ignored}
	if p.dialer, err = e.deps.Dialer(inv, opts); err != nil {
		return nil, configErr(fmt.Errorf("set up SSH for %s: %w", opts.InventoryPath, err))
	}
	// A key file that cannot be used is the operator's to fix: say so
	// before any host is contacted.
	if err := p.dialer.CheckKeys(hosts); err != nil {
		return nil, configErr(fmt.Errorf("%s: %w", opts.InventoryPath, err))
	}
	return p, nil
}

// prepare reads and checks everything the operator gave: inventory,
// selection and image, and readies the image on the bastion. Every error in
// the input wraps ErrConfig; nothing touches a host.
func (e *Engine) prepare(ctx context.Context, opts Options, log *slog.Logger) (*prepared, error) {
	if opts.Image == "" {
		return nil, configErr(errors.New("no image given: name the image to distribute"))
	}
	p, err := e.reachable(opts)
	if err != nil {
		return nil, err
	}
	if opts.BastionAddr != "" && !opts.Tunnel {
		if p.bastionIPs, err = resolveBastion(ctx, opts.BastionAddr); err != nil {
			return nil, configErr(err)
		}
	}

	if p.mode == ModeRegistry {
		// The hosts pull from the registry; the bastion's copy, when it has
		// one, gives the image ID to check every pull against.
		insp, err := e.deps.Docker.ImageInspect(ctx, opts.Image)
		if err != nil {
			log.Info("registry mode: the bastion has no copy of the image; the hosts' image IDs cannot be checked", "err", err)
			return p, nil
		}
		p.expect = &expectedImage{ID: insp.ID, Platform: imagecache.Platform{OS: insp.Os, Architecture: insp.Architecture, Variant: insp.Variant}}
		log.Debug("registry mode: bastion knows the image", "id", insp.ID, "platform", p.expect.Platform)
		return p, nil
	}

	dir := opts.CacheDir
	if dir == "" {
		dir = e.deps.CacheDir
	}
	if dir == "" {
		if dir, err = imagecache.DefaultDir(); err != nil {
			return nil, err
		}
	}
	p.cacheDir = dir
	cache, err := imagecache.New(dir)
	if err != nil {
		return nil, err
	}
	im, err := cache.Prepare(ctx, e.deps.Docker, opts.Image, func(s string) {
		log.Info(s)
	})
	switch {
	case errors.Is(err, imagecache.ErrNoImage), errors.Is(err, imagecache.ErrNoLayers):
		return nil, configErr(err)
	case err != nil:
		return nil, fmt.Errorf("prepare image: %w", err)
	}
	p.image = im
	if p.config, err = im.Config(); err != nil {
		return nil, err
	}
	if p.mode == ModeAuto {
		p.mode = chooseMode(im.Size(), len(p.hosts))
		log.Info("auto mode", "chose", p.mode, "size", im.Size(), "hosts", len(p.hosts))
		if p.mode == ModeRegistry {
			p.expect = &expectedImage{ID: im.ID, Platform: im.Platform, Config: p.config}
		}
	}
	return p, nil
}

// resolveBastion turns --bastion-addr into the IPv4 addresses nodes dial
// the seeder at and accept it from. A name must resolve here.
func resolveBastion(ctx context.Context, addr string) ([]string, error) {
	if ip := net.ParseIP(addr); ip != nil {
		if ip.To4() == nil {
			return nil, fmt.Errorf("--bastion-addr %s: the swarm speaks IPv4; give an IPv4 address or a name that has one", addr)
		}
		return []string{ip.String()}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", addr)
	if err != nil || len(ips) == 0 {
		return nil, fmt.Errorf("--bastion-addr %s: this machine cannot resolve it to an IPv4 address (%v); give an IP address, or a name it resolves", addr, err)
	}
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out, nil
}

// resolveHosts lists the addresses of hosts that the bastion can resolve,
// so nodes accept each other and no one else. A host whose name the bastion
// cannot resolve is left out, with a warning: it still gets the image from
// the bastion and from the peers it dials.
func resolveHosts(ctx context.Context, d Dialer, hosts []inventory.Host, log *slog.Logger) []string {
	out := []string{}
	for _, h := range hosts {
		addr := h.Address
		if addr == "" {
			addr = h.Name
		}
		if t, err := d.Resolve(h); err == nil && t.HostName != "" {
			addr = t.HostName
		}
		if ip := net.ParseIP(addr); ip != nil {
			out = append(out, ip.String())
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, addr)
		if err != nil {
			log.Warn("cannot resolve host for the peer allow list", "host", h.Name, "addr", addr, "err", err)
			continue
		}
		out = append(out, ips...)
	}
	return out
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

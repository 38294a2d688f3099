package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/client"

	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/registrysource"
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
	// source is where the image came from (p2p): daemon or registry.
	source Source
	// release is the image for every platform it has, nil in registry
	// mode; images are those of release the hosts' platforms (as the
	// inventory says, see platforms) need, their layers as they travel,
	// and cacheDir the cache they live in.
	release  *imagecache.Release
	images   []*imagecache.Image
	cacheDir string
	// platforms is each host's platform as the inventory says (the
	// bastion's when it says none), by host name: what was fetched and is
	// served. The probe checks it.
	platforms map[string]imagecache.Platform
	// bastionIPs are --bastion-addr's addresses, resolved on the bastion
	// (IPv4 only: the swarm speaks IPv4); empty without --bastion-addr.
	bastionIPs []string
	// expect is, in registry mode, the bastion's copy of the image that
	// the hosts' pulls are checked against; nil when the bastion has none.
	expect *expectedImage
}

// layers are the layer files of the job's images, each once: what the
// bastion serves.
func (p *prepared) layers() []imagecache.Layer { return imagecache.Layers(p.images) }

// size is the bytes of the layer files the bastion serves.
func (p *prepared) size() int64 {
	var n int64
	for _, l := range p.layers() {
		n += l.Size
	}
	return n
}

// served reports whether im is one of the images the job serves.
func (p *prepared) served(im *imagecache.Image) bool {
	return slices.Contains(p.images, im)
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
		if e.deps.Docker == nil || opts.Source == SourceRegistry {
			log.Info("registry mode: no copy of the image on the bastion to check the hosts' image IDs against")
			return p, nil
		}
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
	p.platforms = hostPlatforms(p.hosts)
	if err := e.readyImage(ctx, p, cache, log); err != nil {
		return nil, err
	}
	if p.mode == ModeAuto {
		size := p.size()
		p.mode = chooseMode(size, len(p.hosts))
		log.Info("auto mode", "chose", p.mode, "size", size, "hosts", len(p.hosts))
		if p.mode == ModeRegistry && len(p.images) == 1 {
			im := p.images[0]
			config, err := im.Config()
			if err != nil {
				return nil, err
			}
			p.expect = &expectedImage{ID: im.ID, Platform: im.Platform, Config: config}
		}
	}
	return p, nil
}

// ErrPlatform means the inventory took a host for another platform than
// the one it reports, so the job did not fetch its image. The host fails
// alone, before any download.
var ErrPlatform = errors.New("the host's image is not in this job")

// imageFor picks the image of the job for a host of platform (as probed;
// machine is its uname -m). A host whose platform the image lacks fails
// with an error wrapping imagecache.ErrNoPlatform (or ErrUnsupported).
func (p *prepared) imageFor(host string, platform imagecache.Platform, machine string) (*imagecache.Image, error) {
	im, err := p.release.Select(platform)
	if err != nil {
		return nil, err
	}
	if !p.served(im) {
		said := p.platforms[host]
		return nil, fmt.Errorf("%w: the host is %s (uname -m %q) but was taken for %s, whose image the job fetched: set platform: %s for it in the inventory",
			ErrPlatform, platform, machine, said, platform)
	}
	return im, nil
}

// hostMaxRate is the cap on a host's swarm traffic: the inventory's, else
// --host-max-rate.
func (p *prepared) hostMaxRate(h inventory.Host) int64 {
	return cmp.Or(h.MaxRate, p.opts.HostMaxRate)
}

// bastionPlatform is the platform a host is taken for when the inventory
// names none: the bastion's own.
func bastionPlatform() imagecache.Platform {
	return imagecache.HostPlatform(runtime.GOOS, runtime.GOARCH)
}

// hostPlatforms is each host's platform as the inventory says, the
// bastion's where it says none.
func hostPlatforms(hosts []inventory.Host) map[string]imagecache.Platform {
	out := make(map[string]imagecache.Platform, len(hosts))
	for _, h := range hosts {
		p := bastionPlatform()
		if h.Platform != "" {
			if hp, err := imagecache.ParsePlatform(h.Platform); err == nil {
				p = hp
			}
		}
		out[h.Name] = p
	}
	return out
}

// distinctPlatforms lists the platforms of m once each, sorted.
func distinctPlatforms(m map[string]imagecache.Platform) []imagecache.Platform {
	var out []imagecache.Platform
	for _, p := range m {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b imagecache.Platform) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// readyImage takes the image from its source into the cache, for the
// platforms the hosts have, with its layers as they will travel: p.source,
// p.release and p.images. The operator's mistakes (no such image or tag,
// denied, unsupported, no image for any of the hosts' platforms) wrap
// ErrConfig.
func (e *Engine) readyImage(ctx context.Context, p *prepared, cache *imagecache.Cache, log *slog.Logger) error {
	opts := p.opts
	status := func(s string) { log.Info(s) }
	src := opts.Source
	var daemonWhy error // why auto did not take the daemon's copy
	if src == SourceAuto {
		src, daemonWhy = SourceRegistry, errors.New("this machine has no Docker client")
		if e.deps.Docker != nil {
			_, daemonWhy = e.deps.Docker.ImageInspect(ctx, opts.Image)
			if daemonWhy == nil {
				src = SourceDaemon
			}
		}
		log.Info("image source", "source", src, "daemon", daemonWhy)
	}
	p.source = src
	platforms := distinctPlatforms(p.platforms)
	switch src {
	case SourceDaemon:
		if e.deps.Docker == nil {
			return configErr(errors.New("--source daemon: this machine has no Docker daemon to take the image from; use --source registry"))
		}
		im, err := cache.Prepare(ctx, e.deps.Docker, opts.Image, status)
		switch {
		case errors.Is(err, imagecache.ErrNoImage), errors.Is(err, imagecache.ErrNoLayers):
			return configErr(err)
		case client.IsErrConnectionFailed(err):
			return configErr(fmt.Errorf("--source daemon: cannot reach the bastion's Docker daemon: %w", err))
		case err != nil:
			return fmt.Errorf("prepare image: %w", err)
		}
		if _, err := im.Release().SelectAll(platforms); err != nil {
			return configErr(fmt.Errorf("%w (the bastion's daemon holds %s; %s)", err, im.Platform, platformHint(p.hosts)))
		}
		if im, err = cache.Compress(ctx, im, opts.Compress, runtime.NumCPU(), status); err != nil {
			return fmt.Errorf("prepare image: %w", err)
		}
		p.release, p.images = im.Release(), []*imagecache.Image{im}
		return nil
	}
	ro := e.deps.Registry
	if ro.Log == nil {
		ro.Log = log
	}
	if ro.Status == nil {
		ro.Status = status
	}
	reg := registrysource.New(cache, ro)
	rel, err := reg.Resolve(ctx, opts.Image)
	if err != nil {
		return registryErr(err, daemonWhy)
	}
	p.release = rel
	if p.images, err = rel.SelectAll(platforms); err != nil {
		return configErr(fmt.Errorf("%w; %s", err, platformHint(p.hosts)))
	}
	if err := reg.Fetch(ctx, rel, platforms...); err != nil {
		return registryErr(err, nil)
	}
	return nil
}

// platformHint says where the hosts' platforms came from.
func platformHint(hosts []inventory.Host) string {
	for _, h := range hosts {
		if h.Platform == "" {
			return fmt.Sprintf("hosts with no platform: in the inventory are taken for the bastion's %s", bastionPlatform())
		}
	}
	return "the hosts' platforms are the inventory's platform: fields"
}

// registryErr sorts an error of the registry source: the operator's
// mistakes wrap ErrConfig. daemonWhy, when set, is why the bastion's
// daemon did not give the image (--source auto).
func registryErr(err error, daemonWhy error) error {
	for _, operator := range []error{imagecache.ErrNoImage, imagecache.ErrUnsupported, imagecache.ErrNoPlatform,
		imagecache.ErrNoLayers, registrysource.ErrDenied, registrysource.ErrBadReference} {
		if errors.Is(err, operator) {
			return configErr(err)
		}
	}
	if daemonWhy != nil && !errors.Is(err, context.Canceled) {
		// Neither source has it: the image cannot be had from here.
		return configErr(fmt.Errorf("%w: not in the bastion's Docker daemon, and its registry cannot be read: %w", imagecache.ErrNoImage, err))
	}
	return fmt.Errorf("read the image from its registry: %w", err)
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
// (docs/BENCHMARKS.md, 200 Mbit/s links, cold node caches, 10 and 250 MB
// in both modes): about 18 MB on 2 hosts, 23 MB on 5 and 10.7 MB on 10,
// linear in between. Below the crossover the swarm's fixed cost (the node
// binary handed from host to host, the tracker's first answers, the
// seeder's piece-by-piece start) outweighs what it saves. Above 10 hosts
// the registry's time grows as n × size ÷ rate while the swarm's stays
// near size ÷ rate plus that fixed cost, so the crossover falls as 1/n:
// 10.7 MB × 10/n. One host has nobody to share with: always the registry.
// (The bench before the node-binary handoff and the super-seeder found
// the opposite trend, a balance point rising with n to 185 MB at 40
// hosts: the swarm's setup and the seeder's repeats grew with n then.)
func balancePoint(n int) int64 {
	const mb = 1000 * 1000
	if n <= 1 {
		return math.MaxInt64
	}
	measured := [...]struct{ hosts, mb float64 }{{2, 18}, {5, 23}, {10, 10.7}}
	x := float64(n)
	last := measured[len(measured)-1]
	if x >= last.hosts {
		return int64(last.mb * last.hosts / x * mb)
	}
	i := 1
	for i < len(measured)-1 && x > measured[i].hosts {
		i++
	}
	a, b := measured[i-1], measured[i]
	v := a.mb + (x-a.hosts)*(b.mb-a.mb)/(b.hosts-a.hosts)
	return int64(max(v, 0) * mb)
}

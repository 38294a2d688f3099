package orchestrator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// Plan is what a job would do, learned without writing anything on a host.
type Plan struct {
	Image string `json:"image"`
	// ImageID is the image's when the job has one (Platforms lists each).
	ImageID string `json:"image_id,omitempty"`
	// Size and Layers are the layer files the bastion would serve.
	Size   int64  `json:"size"`
	Layers int    `json:"layers"`
	Mode   string `json:"mode"`
	// Source is where the image comes from: "daemon" or "registry".
	Source    string          `json:"source"`
	Platforms []PlatformImage `json:"platforms,omitempty"`
	Hosts     []HostPlan      `json:"hosts"`
	// Bytes is what the whole job will move to the hosts.
	Bytes int64 `json:"bytes"`
	// UpToDate counts the hosts that already have the image.
	UpToDate int `json:"up_to_date"`
	// Ignored lists what the inventory holds that layercast does not use.
	Ignored []string `json:"ignored,omitempty"`
}

// HostPlan is one host's line of a plan.
type HostPlan struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	Arch      string `json:"arch,omitempty"`
	// Platform is the host's as probed ("linux/arm64"); ImageID the image
	// it would get for it, and Layers how many layers that image has.
	Platform string `json:"platform,omitempty"`
	ImageID  string `json:"image_id,omitempty"`
	Layers   int    `json:"layers,omitempty"`
	// Docker is "direct", "sudo" or "none".
	Docker string `json:"docker,omitempty"`
	// Runtime is where the image would go: "docker" or "containerd".
	Runtime string `json:"runtime,omitempty"`
	// LayersPresent is how many layers (a prefix) the daemon already holds.
	LayersPresent int  `json:"layers_present"`
	UpToDate      bool `json:"up_to_date"`
	// Needs is the bytes the host still has to receive.
	Needs int64 `json:"needs"`
	// NodeCache says whether the host's node cache holds this layercast's
	// node binary: "cached" (nothing to send), "empty" (the job sends it
	// and keeps it there), "off" (node_cache: false or --no-node-cache)
	// or "" when unknown.
	NodeCache string `json:"node_cache,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Plan connects to every selected host and reports, per host, whether it is
// reachable, its architecture, how docker is usable, which layers it has and
// what it still needs. It writes nothing on any host and starts nothing on
// the bastion but SSH connections.
func (e *Engine) Plan(ctx context.Context, opts Options) (*Plan, error) {
	if opts.Mode == ModeRegistry {
		return nil, configErr(errors.New("plan needs the image on the bastion; it plans p2p jobs"))
	}
	opts.Mode = ModeP2P
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, configErr(err)
	}
	in, err := e.prepare(ctx, opts, e.deps.Logger)
	if err != nil {
		return nil, err
	}
	s := survey{dialer: in.dialer, job: in, nodes: e.deps.Nodes, noCache: opts.NoNodeCache, limit: opts.SetupTimeout}
	p := &Plan{Image: opts.Image, Size: in.size(), Layers: len(in.layers()), Mode: string(in.mode), Source: string(in.source), Ignored: in.ignored}
	for _, im := range in.images {
		p.Platforms = append(p.Platforms, PlatformImage{Platform: im.Platform.String(), ImageID: im.ID, Size: im.Size(), Unpacked: im.UnpackedSize()})
	}
	if len(in.images) == 1 {
		p.ImageID = in.images[0].ID
	}
	hosts := make([]HostPlan, len(in.hosts))
	errs := newFanOut(opts.Concurrency, opts.UploadConcurrency).each(ctx, len(in.hosts), func(ctx context.Context, i int, _ func()) error {
		var err error
		hosts[i], err = s.host(ctx, in.hosts[i])
		return err
	})
	for i, hp := range hosts {
		hp.Host = in.hosts[i].Name
		if errs[i] != nil {
			hp.Error = errs[i].Error()
		}
		if hp.UpToDate {
			p.UpToDate++
		}
		p.Bytes += hp.Needs
		p.Hosts = append(p.Hosts, hp)
	}
	p.makeSafe()
	return p, nil
}

// survey is what a plan needs to look at one host.
type survey struct {
	dialer  Dialer
	job     *prepared
	nodes   *nodeassets.Set
	noCache bool
	// limit bounds each command on a host (--setup-timeout).
	limit time.Duration
}

// host learns what one host has. Its error is the host's, not the plan's.
func (s survey) host(ctx context.Context, h inventory.Host) (HostPlan, error) {
	hp := HostPlan{}
	conn, err := s.dialer.Dial(ctx, h)
	if err != nil {
		return hp, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	hp.Reachable = true
	var facts hostops.Facts
	err = within(ctx, s.limit, func(ctx context.Context) (err error) {
		facts, err = conn.Probe(ctx, true)
		return err
	})
	if err != nil {
		return hp, fmt.Errorf("probe host: %w", err)
	}
	hp.Arch, hp.Docker, hp.Runtime = facts.Arch, string(facts.Docker), facts.Runtime
	hp.NodeCache = s.nodeCache(ctx, conn, h, facts)
	if err := facts.Usable(); err != nil {
		return hp, err
	}
	platform := imagecache.HostPlatform(facts.OS, cmp.Or(facts.Machine, facts.Arch))
	hp.Platform = platform.String()
	image, err := s.job.imageFor(h.Name, platform, facts.Machine)
	if err != nil {
		return hp, err
	}
	hp.ImageID, hp.Layers, hp.Needs = image.ID, len(image.Layers), image.Size()
	var chains, ids map[string]bool
	run := func(what string, list openssh.Command) ([]byte, error) {
		var out []byte
		err := within(ctx, s.limit, func(ctx context.Context) (err error) {
			out, err = conn.Run(ctx, list)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return out, nil
	}
	if facts.Runtime == hostops.RuntimeContainerd {
		list := openssh.Script(listSnapshotsScript, cmp.Or(h.ContainerdAddress, jobspec.DefaultContainerdAddress),
			cmp.Or(h.ContainerdNamespace, jobspec.DefaultContainerdNamespace), cmp.Or(h.ContainerdSnapshotter, "overlayfs"))
		list.Become = h.Become // containerd's socket is root's
		out, err := run("list containerd's snapshots (with ctr)", list)
		if err != nil {
			return hp, err
		}
		chains, ids = parseSnapshots(out), map[string]bool{}
	} else {
		list := openssh.Script(listLayersScript, h.DockerHost)
		list.Become = h.Become // docker may need root
		out, err := run("list the daemon's layers", list)
		if err != nil {
			return hp, err
		}
		if chains, ids, err = parseLayerLists(out); err != nil {
			return hp, err
		}
	}
	if ids[image.ID] {
		hp.UpToDate, hp.Needs, hp.LayersPresent = true, 0, len(image.Layers)
		return hp, nil
	}
	for _, l := range image.Layers {
		if !chains[l.ChainID] {
			break
		}
		hp.LayersPresent++
		hp.Needs -= l.Size
	}
	return hp, nil
}

// listSnapshotsScript prints containerd's committed snapshots in namespace
// $2 for snapshotter $3 through its socket $1, one "KEY PARENT KIND" line
// each (ctr's table). An unpacked layer's snapshot is named by its chain
// ID. Read-only.
const listSnapshotsScript = `ctr -a "$1" -n "$2" snapshots --snapshotter "$3" ls`

// parseSnapshots returns the chain IDs of the committed snapshots in
// listSnapshotsScript's output.
func parseSnapshots(out []byte) map[string]bool {
	chains := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[len(f)-1] == "Committed" && strings.HasPrefix(f[0], "sha256:") {
			chains[f[0]] = true
		}
	}
	return chains
}

// nodeCache says whether the host's node cache holds the node binary for
// its CPU ("" when that cannot be told without building the binary).
func (s survey) nodeCache(ctx context.Context, conn Conn, h inventory.Host, facts hostops.Facts) string {
	if s.noCache || h.NoNodeCache || facts.CacheHome == "" {
		return "off"
	}
	bin, err := s.nodes.Get(facts.Arch)
	if err != nil {
		return ""
	}
	var ok bool
	err = within(ctx, s.limit, func(ctx context.Context) (err error) {
		ok, err = conn.NodeCached(ctx, hostops.NodeCacheDir(facts.CacheHome), bin.SHA256)
		return err
	})
	switch {
	case err != nil:
		return ""
	case ok:
		return "cached"
	}
	return "empty"
}

// listLayersScript prints, per image in the daemon, its ID and its layers'
// diff IDs as JSON. $1 is DOCKER_HOST (may be empty). Read-only.
const listLayersScript = `[ -n "$1" ] && export DOCKER_HOST="$1"
ids=$(docker image ls -qa --no-trunc) || exit 1
[ -z "$ids" ] && exit 0
docker image inspect --format '{{.Id}} {{json .RootFS.Layers}}' $ids`

// parseLayerLists turns listLayersScript's output into the set of chain IDs
// and the set of image IDs the daemon holds.
func parseLayerLists(out []byte) (chains, ids map[string]bool, err error) {
	chains, ids = map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		id, layersJSON, ok := strings.Cut(line, " ")
		if !ok {
			return nil, nil, fmt.Errorf("unexpected line from docker image inspect: %q", line)
		}
		ids[id] = true
		var diffIDs []string
		if err := json.Unmarshal([]byte(layersJSON), &diffIDs); err != nil {
			return nil, nil, fmt.Errorf("parse layers of %s: %w", id, err)
		}
		chain := ""
		for _, d := range diffIDs {
			chain = jobspec.ChainID(chain, d)
			chains[chain] = true
		}
	}
	return chains, ids, nil
}

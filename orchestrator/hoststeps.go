package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
	"github.com/layercast/layercast/orchestrator/seed"
)

// hostSteps is each host's pipeline: reach the host, learn about it, make
// a fresh work dir while clearing what earlier jobs left, bring the node
// binary, start the node and follow it. The steps keep what they learn in
// the host's hostRun; their cleanups are the host's teardown.
func hostSteps(j *job, book *hostBook, nodes *nodeassets.Set, fan *fanOut, bins, torrents *binSources, registryAuth string) []step[*hostRun] {
	setup := j.opts.SetupTimeout
	return []step[*hostRun]{
		connectStep{dialer: j.dialer, book: book},
		probeStep{j: j, book: book, registry: j.mode == ModeRegistry, limit: setup},
		nodeBinaryStep{nodes: nodes, noCache: j.opts.NoNodeCache},
		workDirStep{jobID: j.id, book: book, emit: j.emit, limit: setup},
		placeNodeStep{fan: fan, bins: bins, book: book, limit: setup, egress: j.egress},
		startStep{j: j, book: book, bins: bins, torrents: torrents, registryAuth: registryAuth},
		followStep{},
	}
}

// connectStep opens the host's one SSH connection.
type connectStep struct {
	dialer Dialer
	book   *hostBook
}

func (connectStep) Title() string { return "connect" }

func (s connectStep) Run(ctx context.Context, hr *hostRun) error {
	s.book.set(hr.host.Name, HostConnecting, "")
	conn, err := s.dialer.Dial(ctx, hr.host)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	hr.conn = conn
	return nil
}

func (connectStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.conn != nil {
		_ = hr.conn.Close()
		hr.note(", SSH closed")
	}
}

// probeStep learns what the host is and whether it can take the job, and
// picks the image for its platform (p2p mode): a host whose platform the
// image lacks, or whose image the job does not serve, fails here, before
// anything is written on it.
type probeStep struct {
	j        *job
	book     *hostBook
	registry bool          // registry mode: the host pulls with docker
	limit    time.Duration // --setup-timeout
}

func (probeStep) Title() string { return "probe the host" }

func (s probeStep) Run(ctx context.Context, hr *hostRun) error {
	// The node asks the daemon itself; the docker CLI would cost the host
	// about 0.2 CPU-seconds here.
	var facts hostops.Facts
	err := within(ctx, s.limit, func(ctx context.Context) (err error) {
		facts, err = hr.conn.Probe(ctx, false)
		return err
	})
	if err != nil {
		return fmt.Errorf("probe host: %w", err)
	}
	if err := facts.Usable(); err != nil {
		return err
	}
	hr.facts = facts
	platform := imagecache.HostPlatform(facts.OS, cmp.Or(facts.Machine, facts.Arch))
	info := HostInfo{Arch: facts.Arch, Runtime: facts.Runtime, Platform: platform.String(), MaxRate: s.j.hostMaxRate(hr.host)}
	if facts.Runtime == hostops.RuntimeContainerd {
		info.Namespace = cmp.Or(hr.host.ContainerdNamespace, jobspec.DefaultContainerdNamespace)
		if s.registry {
			s.book.setInfo(hr.host.Name, info)
			return errors.New("registry mode pulls with docker, and this host runs containerd without it: use --mode p2p")
		}
	}
	if s.registry {
		s.book.setInfo(hr.host.Name, info)
		return nil
	}
	im, err := s.j.imageFor(hr.host.Name, platform, facts.Machine)
	if err == nil {
		hr.image, info.ImageID = im, im.ID
	}
	s.book.setInfo(hr.host.Name, info)
	return err
}

// nodeBinaryStep picks the node binary for the host's CPU and where it
// lives there: the login user's node cache (kept between jobs, see
// hostops.Conn.MakeWorkDir) unless the operator or the inventory said no,
// or the cache is on a file system mounted noexec; else the work dir.
// Without a cache it checks, before anything is written, that the work
// dir's base has room for it.
type nodeBinaryStep struct {
	nodes   *nodeassets.Set
	noCache bool
}

func (nodeBinaryStep) Title() string { return "pick the node binary" }

func (s nodeBinaryStep) Run(ctx context.Context, hr *hostRun) error {
	bin, err := s.nodes.GetContext(ctx, hr.facts.Arch)
	if err != nil {
		return err
	}
	hr.binary = bin
	if !s.noCache && !hr.host.NoNodeCache && hr.facts.CacheHome != "" && !hr.facts.CacheNoExec {
		hr.cacheDir = hostops.NodeCacheDir(hr.facts.CacheHome)
		return nil
	}
	return roomForNode(hr.facts.WorkBase, hr.facts.WorkFree, bin.Size+int64(len(bin.Gz)))
}

// ErrNoRoom means a host's work dir cannot hold the node binary.
var ErrNoRoom = errors.New("not enough space")

// roomForNode checks that the work dir's base dir (free bytes as probed;
// negative when unknown) can hold the node binary while it unpacks. The
// node itself checks the room for the layers.
func roomForNode(dir string, free, need int64) error {
	if free < 0 || free >= need {
		return nil
	}
	return fmt.Errorf("%w in %s: the host has %.1f MB free in %s, the node binary needs %.1f MB; free space there, or set work_dir: in the inventory", ErrNoRoom, dir, float64(free)/1e6, dir, float64(need)/1e6)
}

// workDirStep makes the job's fresh work dir on the host and learns where
// the node binary lives there (hostops.Conn.MakeWorkDir, one command);
// meanwhile, in a session of its own, it clears what ended jobs left when
// the probe saw work dirs of other jobs (Facts.Leftovers). Its cleanup
// removes the work dir with everything in it, stopping a node that still
// runs there.
type workDirStep struct {
	jobID string
	book  *hostBook
	emit  func(Event)
	limit time.Duration // --setup-timeout
}

func (workDirStep) Title() string { return "make the work dir" }

func (s workDirStep) Run(ctx context.Context, hr *hostRun) error {
	// From here on the host is written to: shown as uploading.
	s.book.set(hr.host.Name, HostUploading, "")
	if len(hr.left.dirs) > 0 {
		if err := s.clearLeft(ctx, hr); err != nil {
			return err
		}
	}
	var cleaning sync.WaitGroup
	if len(hr.facts.Leftovers) > 0 { // the probe saw another job's work dir
		cleaning.Go(func() { s.cleanStale(ctx, hr) })
	}
	var wd hostops.WorkDir
	hr.dirAsked = hostops.WorkDirPath(hr.facts.WorkBase, s.jobID)
	err := within(ctx, s.limit, func(ctx context.Context) (err error) {
		if hr.cacheDir == "" {
			wd, err = hr.conn.MakeWorkDir(ctx, hr.facts.WorkBase, s.jobID, hr.cacheDir, hr.binary.SHA256)
			return err
		}
		// A warm cache starts the node in the same session (startStep
		// follows it); a cold one only answers where the binary goes.
		hr.nodeAsked = true
		wd, hr.started, err = hr.conn.StartCached(ctx, hr.facts.WorkBase, s.jobID, hr.cacheDir, hr.binary.SHA256, nodeCommand("", s.jobID, hr.host.Become))
		return err
	})
	cleaning.Wait()
	hr.dir = wd.Path // made even when the answer was unexpected: removed in Cleanup
	if err != nil {
		return fmt.Errorf("make job dir: %w", err)
	}
	hr.nodeBin, hr.nodeCached = wd.Node.Path, wd.Node.Cached
	return nil
}

// nodeCommand runs the node binary at path for job jobID.
func nodeCommand(path, jobID string, become bool) openssh.Command {
	return openssh.Command{Path: path, Args: []string{jobspec.NodeJobFlag, jobID}, Become: become}
}

// clearLeft clears, over the host's new SSH connection, what this job's
// attempts on lost connections left there (runHost): it stops a node
// still running from their work dirs, removes the temporary images such a
// node left (waiting for a load it left in flight, as the teardown does),
// then the dirs. The new attempt then makes its work dir afresh.
func (s workDirStep) clearLeft(ctx context.Context, hr *hostRun) error {
	var stopped bool
	for _, dir := range hr.left.dirs {
		err := within(ctx, s.limit, func(ctx context.Context) error {
			was, err := hr.conn.StopNode(ctx, dir)
			stopped = stopped || was
			return err
		})
		if err != nil {
			return fmt.Errorf("clear what the lost connection left: %w", err)
		}
	}
	msg := "cleared what the lost SSH connection left: "
	if stopped {
		msg += "stopped its node, "
	}
	if hr.left.node {
		tctx, cancel := context.WithTimeout(ctx, tempImagesGrace)
		refs, err := hr.conn.RemoveTempImages(tctx, s.jobID, true, hr.facts.WorkBases)
		cancel()
		if err != nil {
			return fmt.Errorf("clear what the lost connection left: %w", err)
		}
		if len(refs) > 0 {
			msg += "removed its temporary images " + strings.Join(refs, ", ") + ", "
		}
	}
	for _, dir := range hr.left.dirs {
		if err := within(ctx, s.limit, func(ctx context.Context) error { return hr.conn.RemoveWorkDir(ctx, dir) }); err != nil {
			return fmt.Errorf("clear what the lost connection left: %w", err)
		}
	}
	s.emit(Event{Kind: EventHostLog, Host: hr.host.Name, Message: msg + "removed " + strings.Join(hr.left.dirs, ", ")})
	hr.left = leftAttempt{}
	return nil
}

// cleanStale removes what earlier jobs that are over left on the host: work
// dirs and nodes still running from them. Jobs that still run (side by side
// with this one) are left alone; so are their temporary images, which the
// node removes for the jobs that are over (it asks the daemon anyway). What
// it cannot remove it only reports; a host that does not answer within
// the setup timeout only delays the job's setup there.
func (s workDirStep) cleanStale(ctx context.Context, hr *hostRun) {
	var removed []hostops.StaleDir
	err := within(ctx, s.limit, func(ctx context.Context) (err error) {
		removed, err = hr.conn.CleanStale(ctx, s.jobID, hr.facts.WorkBases)
		return err
	})
	if err != nil {
		hr.log.Warn("clean up earlier jobs", "err", err)
		return
	}
	for _, r := range removed {
		var msg string
		switch {
		case r.Live:
			hr.log.Info("another job runs on the host", "dir", r.Dir)
			continue
		case !r.Removed:
			msg = "could not remove " + r.Dir + " of an ended job: " + r.Error
		default:
			msg = "removed what an ended job left: " + r.Dir
			if r.Killed {
				msg += fmt.Sprintf(" (stopped its node, pid %d)", r.PID)
			}
		}
		s.emit(Event{Kind: EventHostLog, Host: hr.host.Name, Message: msg})
	}
}

func (workDirStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.started != nil && hr.node == nil {
		// Started from the cache, but the job ended before startStep
		// followed it: nothing else stops it.
		if err := hr.started.Stop(ctx); err != nil {
			hr.log.Warn("stop the node started from the cache", "err", err)
		}
	}
	if hr.dir == "" || hr.lost {
		return
	}
	if err := hr.conn.RemoveWorkDir(ctx, hr.dir); err != nil {
		hr.log.Warn("remove job dir", "dir", hr.dir, "err", err)
		hr.note("; could not remove " + hr.dir + ": " + err.Error())
		return
	}
	hr.note(", " + hr.dir + " removed")
}

// placeNodeStep brings the node binary to the host unless its node cache
// holds it: from another host's node when one is free (binSources), else
// from the bastion, holding one of the fan-out's upload slots. A peer whose
// transfer failed is not asked again; the host then tries the next source.
type placeNodeStep struct {
	fan   *fanOut
	bins  *binSources
	book  *hostBook
	limit time.Duration // --setup-timeout, per transfer; waiting for a slot is not counted
	// egress is the bastion's upload budget (--max-rate): an upload from
	// the bastion draws its bytes from it before it starts.
	egress *rate.Limiter
}

func (placeNodeStep) Title() string { return "bring the node binary" }

// maxPeerTries bounds the peers one host tries before it asks the bastion.
const maxPeerTries = 3

func (s placeNodeStep) Run(ctx context.Context, hr *hostRun) error {
	sha := hr.binary.SHA256
	if hr.nodeCached {
		s.bins.cached(hr.host.Name)
		s.book.setNodeFrom(hr.host.Name, "cache")
		return nil
	}
	canFetch := hr.facts.Fetch != ""
	for tries := 0; ; tries++ {
		src, err := s.bins.get(ctx, sha, canFetch && tries < maxPeerTries, tries)
		if err != nil {
			return fmt.Errorf("wait for the node binary: %w", err)
		}
		start := time.Now()
		if src.peer == nil {
			err = s.fan.upload(ctx, func() error {
				if err := spend(ctx, s.egress, len(hr.binary.Gz)); err != nil {
					return fmt.Errorf("upload node binary: wait for --max-rate: %w", err)
				}
				return within(ctx, s.limit, func(ctx context.Context) error {
					return hr.conn.Upload(ctx, hr.nodeBin, hostops.Binary{Gzip: hr.binary.Gz, SHA256: sha})
				})
			})
			s.bins.done(src, sha, hr.host.Name, err == nil, int64(len(hr.binary.Gz)), time.Since(start))
			if err != nil {
				return err // says "upload node binary"
			}
			s.book.setNodeFrom(hr.host.Name, "bastion")
			return nil
		}
		err = within(ctx, s.limit, func(ctx context.Context) error {
			return hr.conn.Fetch(ctx, hr.nodeBin, sha, src.peer.url)
		})
		s.bins.done(src, sha, hr.host.Name, err == nil, int64(len(hr.binary.Gz)), time.Since(start))
		if err == nil {
			s.book.setNodeFrom(hr.host.Name, src.peer.host)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fetch node binary: %w", ctx.Err())
		}
		hr.log.Warn("fetch the node binary from another host", "from", src.peer.host, "err", err)
		if errors.Is(err, hostops.ErrNoFetchTool) {
			canFetch = false
		}
	}
}

// startStep starts the node with its job spec on stdin and hands back the
// host's fan-out slot: following a node holds none. Its cleanup stops the
// node.
type startStep struct {
	j    *job
	book *hostBook
	bins *binSources
	// torrents is where hosts get the layers' torrents from (torrents.go).
	torrents     *binSources
	registryAuth string
}

func (startStep) Title() string { return "start the node" }

func (s startStep) Run(ctx context.Context, hr *hostRun) error {
	spec, err := s.j.specFor(ctx, hr, s.registryAuth)
	if err != nil {
		return err
	}
	spec.Handoff = &jobspec.Handoff{Path: hr.nodeBin + ".gz", Name: jobspec.HandoffName(hr.binary.SHA256)}
	if hr.nodeCached {
		spec.MarkUsed = []string{hr.nodeBin, hr.nodeBin + ".gz"}
	}
	proc := hr.started // started from the cache with the work dir
	if proc == nil {
		hr.nodeAsked = true
		proc, err = hr.conn.Start(ctx, nodeCommand(hr.nodeBin, s.j.id, hr.host.Become))
		if err != nil {
			return fmt.Errorf("start node binary: %w", err)
		}
	}
	// The node runs: until it downloads, it connects to the daemon and
	// asks it what it has, bounded by --check-timeout.
	s.book.set(hr.host.Name, HostChecking, "")
	// The node's done must name the image the spec asked for; a registry
	// pull with nothing to check against is recorded as unverified.
	imageID := spec.ImageID
	if imageID == "" {
		s.book.setUnverified(hr.host.Name)
	}
	bins, sha, host := s.bins, hr.binary.SHA256, hr.host.Name
	serverIP := hr.facts.ServerIP
	// The seeder waits while the spec is on its way, until the node's
	// first event says it arrived (seed.Seeder.Hold).
	heard := func() {}
	if s.j.served != nil {
		heard = s.j.served.hold(specHold)
	}
	out := nodeOutlets{book: s.book, emit: s.j.emit, imageID: imageID, layers: s.j.layerMatcher(hr.image), heard: heard, serving: func(addr string) {
		if u := peerURL(addr, serverIP, jobspec.HandoffName(sha)); u != "" {
			bins.addPeer(sha, host, u)
		}
	}}
	slim := spec.Mode != string(ModeRegistry) && len(spec.Layers) > 0 && len(spec.Layers[0].Torrent) == 0
	var handout *torrentsHandout
	inSpec := false
	if slim {
		handout = newTorrentsHandout(s.torrents, hr.image.ID, host)
		inSpec = s.inSpec(spec, handout)
		out.torrents = func(addr string, ok bool, why string) {
			if u := peerURL(addr, serverIP, jobspec.TorrentsName(hr.image.ID)); ok && u != "" {
				handout.sources.addPeer(handout.key, host, u)
			}
			if !ok {
				hr.log.Debug("no host served the torrents", "why", why)
			}
			handout.answer(ok)
		}
	}
	hr.node = followNode(proc, host, hr.log, out)
	go func() {
		<-hr.node.exited
		bins.removePeer(host)
		if slim {
			s.torrents.removePeer(host)
		}
	}()
	hr.release()
	// A node that dies at once fails the write; its stdout and stderr then
	// tell why, so follow it either way.
	if err := hr.node.send(spec); err != nil {
		heard()
		hr.log.Debug("send job spec", "err", err)
		if handout != nil {
			handout.settle(false)
		}
	} else {
		go hr.node.heartbeat(ctx)
		if slim {
			go s.giveTorrents(ctx, hr, handout, inSpec)
		}
	}
	return nil
}

func (s startStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.node == nil {
		return
	}
	msg := hr.node.stop(ctx)
	if !hr.node.cleanedUp() && !hr.lost {
		// The node died without cleaning up: what it loaded into the
		// daemon for this job is still there. A daemon that hangs (a
		// reason the node may have died) gets a bounded try, so that the
		// work dir is still removed.
		tctx, cancel := context.WithTimeout(ctx, tempImagesGrace)
		refs, err := hr.conn.RemoveTempImages(tctx, s.j.id, true, hr.facts.WorkBases)
		cancel()
		if err != nil {
			hr.log.Warn("remove temporary images", "err", err)
			msg += "; could not remove its temporary images: " + err.Error()
		} else if len(refs) > 0 {
			msg += ", its temporary images " + strings.Join(refs, ", ") + " removed"
		}
	}
	hr.note(msg)
}

// specHold bounds how long one host's spec holds the seeder. A spec that
// does not wait behind the seeder's blocks arrives in milliseconds, and
// the node's first event releases the hold; at a job's start all the
// hosts' specs share the bastion's link, so the bound is the seeder's
// whole pause budget, which bounds all the holds together
// (seed.Seeder.Hold).
const specHold = seed.MaxPauses

// tempImagesGrace bounds the teardown's removal of a dead node's
// temporary images: the wait for a load it left in flight, then 20 s.
const tempImagesGrace = jobspec.LoadGrace + 20*time.Second

// followStep lasts while the node runs: until it ends (an error when it
// ended before the host finished) or until the job's hosts are all done.
type followStep struct{}

func (followStep) Title() string { return "follow the node" }

func (followStep) Run(ctx context.Context, hr *hostRun) error {
	select {
	case <-hr.node.exited:
		return hr.node.err
	case <-ctx.Done():
		return nil
	}
}

// spend takes n bytes from the budget l, a burst at a time: an upload the
// bastion sends at the link's speed then counts against --max-rate as the
// seeder's blocks do, so the bastion's upload stays within the cap over
// any stretch longer than the upload.
func spend(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil || l.Limit() == rate.Inf {
		return nil
	}
	for n > 0 {
		k := min(n, l.Burst())
		if err := l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"
	"golang.org/x/sync/errgroup"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// workDirStep owns the job's temp dir: it holds the pid file, the lock
// that tells other jobs this one is alive, and the layer files (and, when
// the host keeps no node cache, the node binary itself). It is removed when
// the node exits, before the lock is let go.
type workDirStep struct {
	j      *job
	made   bool
	unlock func()
}

func (s *workDirStep) Title() string { return "prepare work dir" }

func (s *workDirStep) Run(ctx context.Context) error {
	dir := s.j.spec.WorkDir
	if err := safeWorkDir(dir, s.j.spec.JobID); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	s.made = true
	if err := writePid(dir); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	unlock, err := holdLock(dir)
	if err != nil {
		return err
	}
	s.unlock = unlock
	return nil
}

func (s *workDirStep) Cleanup(ctx context.Context) error {
	if !s.made {
		return nil
	}
	err := os.RemoveAll(s.j.spec.WorkDir)
	if s.unlock != nil {
		s.unlock()
	}
	if err != nil {
		return fmt.Errorf("remove work dir: %w", err)
	}
	return nil
}

// safeWorkDir refuses work dirs the node must not remove recursively: only
// a clean absolute path whose last element is the job's own dir name
// (jobspec.WorkDir's, under any parent) is removed when the node exits.
func safeWorkDir(dir, jobID string) error {
	want := filepath.Base(jobspec.WorkDir(jobID))
	switch {
	case dir == "":
		return errors.New("work_dir is empty")
	case !filepath.IsAbs(dir) || filepath.Clean(dir) != dir:
		return fmt.Errorf("work_dir %q is not a clean absolute path", dir)
	case !jobspec.ValidJobID(jobID) || filepath.Base(dir) != want:
		return fmt.Errorf("work_dir %q is not this job's dir; want a dir named %s", dir, want)
	case strings.Count(dir, "/") < 2:
		return fmt.Errorf("work_dir %q is a top-level directory; want a job dir such as %s", dir, jobspec.WorkDir(jobID))
	}
	return nil
}

// specStep checks that the spec is consistent with itself: the config is
// the image ID's, and the layers are the config's.
type specStep struct{ j *job }

func (s *specStep) Title() string { return "check job spec" }

func (s *specStep) Run(ctx context.Context) error {
	spec := s.j.spec
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	if arg := s.j.opts.JobID; arg != "" && arg != spec.JobID {
		return fmt.Errorf("%w: the node was started for job %q, the spec is job %q's", ErrBadSpec, arg, spec.JobID)
	}
	if spec.Mode == "registry" {
		s.j.ref = spec.Image
		return nil
	}
	ref, err := tagRef(spec.Image)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	s.j.ref = ref
	if got := dockerimage.Digest(spec.Config); got != spec.ImageID {
		return fmt.Errorf("%w: config hashes to %s, not to image_id %s", ErrBadSpec, got, spec.ImageID)
	}
	diffIDs, err := dockerimage.DiffIDs(spec.Config)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSpec, err)
	}
	var layerDiffs, layerChains []string
	for _, l := range spec.Layers {
		layerDiffs = append(layerDiffs, l.DiffID)
		layerChains = append(layerChains, l.ChainID)
	}
	if !slices.Equal(diffIDs, layerDiffs) {
		return fmt.Errorf("%w: layers' diff_ids %v differ from the config's %v", ErrBadSpec, layerDiffs, diffIDs)
	}
	if chains := jobspec.ChainIDs(diffIDs); !slices.Equal(chains, layerChains) {
		return fmt.Errorf("%w: layers' chain_ids %v, computed %v", ErrBadSpec, layerChains, chains)
	}
	return nil
}

// tagRef returns image as the tag a docker-save manifest can carry:
// ":latest" added when it has no tag, a digest dropped.
func tagRef(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	tagged, ok := named.(reference.Tagged)
	if !ok {
		if _, digested := named.(reference.Digested); digested {
			return "", fmt.Errorf("image %q has a digest and no tag; p2p mode needs a tag to give it", image)
		}
		return reference.FamiliarString(reference.TagNameOnly(named)), nil
	}
	withTag, err := reference.WithTag(reference.TrimNamed(named), tagged.Tag())
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	return reference.FamiliarString(withTag), nil
}

// connectStep opens the runtime's client: Docker's, or containerd's when
// the spec says so.
type connectStep struct{ j *job }

func (s *connectStep) Title() string { return "connect to " + s.j.spec.RuntimeOf() }

func (s *connectStep) Run(ctx context.Context) error {
	if s.j.spec.RuntimeOf() == jobspec.RuntimeContainerd {
		if s.j.opts.Containerd == nil {
			return errors.New("this node cannot import into containerd")
		}
		rt, err := s.j.opts.Containerd(ctx, s.j.spec)
		if err != nil {
			return err
		}
		s.j.rt = rt
		return nil
	}
	api, err := s.j.opts.Docker(ctx, s.j.spec.DockerHost)
	if err != nil {
		return err
	}
	s.j.daemon = dockerimage.New(api, s.j.log)
	s.j.daemon.MarkLoadsIn(filepath.Join(s.j.spec.WorkDir, jobspec.LoadingFile))
	s.j.rt = &dockerRuntime{api: api, daemon: s.j.daemon, host: s.j.spec.DockerHost}
	return nil
}

func (s *connectStep) Cleanup(ctx context.Context) error {
	if s.j.rt == nil {
		return nil
	}
	return s.j.rt.Close()
}

// checkStep finds the leading layers the runtime already has. It begins
// the import, so it ends it too: a job that fails anywhere before the
// import is committed rolls it back.
type checkStep struct{ j *job }

func (s *checkStep) Title() string { return "check which layers " + s.j.spec.RuntimeOf() + " has" }

func (s *checkStep) Run(ctx context.Context) error {
	j := s.j
	j.ev.state(jobspec.StateChecking, "")
	imp, err := j.rt.Begin(ctx, RuntimeImage{
		Ref: j.ref, ID: j.spec.ImageID, Config: j.spec.Config, Layers: j.spec.Layers, Job: j.spec.JobID,
	})
	if err != nil {
		return err
	}
	j.imp = imp
	j.present = imp.Present()
	j.prog.setLayers(j.spec.Layers, j.present)
	missing := j.missing()
	msg := fmt.Sprintf("%s has %d of %d layers; downloading %d (%s)", j.rt.Name(), j.present, len(j.spec.Layers), len(missing), human(size(missing)))
	if imp.Had() {
		msg = j.rt.Name() + " has the image; tagging it only"
	}
	j.log.Info(msg)
	j.ev.emit(jobspec.Event{Kind: jobspec.EventLog, Message: msg})
	return nil
}

func (s *checkStep) Cleanup(ctx context.Context) error {
	if s.j.imp == nil || s.j.imported {
		return nil
	}
	return s.j.imp.Rollback(ctx)
}

// missing returns the layers to download, once per digest.
func (j *job) missing() []jobspec.Layer {
	var out []jobspec.Layer
	seen := map[string]bool{}
	for _, l := range j.spec.Layers[j.present:] {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			out = append(out, l)
		}
	}
	return out
}

func size(layers []jobspec.Layer) int64 {
	var n int64
	for _, l := range layers {
		n += l.Size
	}
	return n
}

// unpacked is what the runtime stores of layers: compressed files unpack
// to more than they weigh.
func unpacked(layers []jobspec.Layer) int64 {
	var n int64
	for _, l := range layers {
		n += l.Unpacked()
	}
	return n
}

// diskStep fails early when the layer files or the runtime's unpacked copy
// of the layers cannot fit.
type diskStep struct{ j *job }

func (s *diskStep) Title() string { return "check disk space" }

func (s *diskStep) Run(ctx context.Context) error {
	j := s.j
	need := size(j.missing())
	if need == 0 {
		return nil
	}
	uses := []diskUse{{path: j.spec.WorkDir, bytes: need, what: "layer files"}}
	stored := unpacked(j.missing())
	for _, d := range j.rt.StorageDirs(ctx) {
		uses = append(uses, diskUse{path: d.Path, bytes: stored, what: d.What})
	}
	return checkSpace(uses, j.log)
}

func daemonIsLocal(host string) bool {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	return host == "" || strings.HasPrefix(host, "unix://")
}

// swarmStep starts the BitTorrent client; it seeds until the job ends.
type swarmStep struct{ j *job }

func (s *swarmStep) Title() string { return "join the swarm" }

func (s *swarmStep) Run(ctx context.Context) error {
	j := s.j
	if len(j.missing()) == 0 {
		return nil
	}
	if j.torrents != nil {
		if err := j.torrents.await(ctx); err != nil {
			return err
		}
	}
	dir := filepath.Join(j.spec.WorkDir, "layers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create layer dir: %w", err)
	}
	l, err := j.opts.Swarm(ctx, j.spec, dir)
	if err != nil {
		return err
	}
	j.leecher = l
	j.prog.setStats(l.Stats)
	return nil
}

func (s *swarmStep) Cleanup(ctx context.Context) error {
	if s.j.leecher == nil {
		return nil
	}
	return s.j.leecher.Close()
}

// transferStep downloads the missing layers and imports them, loading each
// downloaded prefix while later layers still download, then the whole image
// under its tag, and checks the result. Until it commits, the check step's
// cleanup removes everything the job created in the runtime.
type transferStep struct{ j *job }

func (s *transferStep) Title() string { return "download and import" }

func (s *transferStep) Run(ctx context.Context) error {
	j := s.j
	files := make([]string, len(j.spec.Layers))
	if len(j.missing()) > 0 {
		j.ev.state(jobspec.StateDownloading, "")
		if err := s.download(ctx, j.imp, files); err != nil {
			return err
		}
	}
	j.ev.state(jobspec.StateImporting, "")
	if err := j.imp.Finish(ctx, files); err != nil {
		return err
	}
	if err := j.imp.Commit(ctx); err != nil {
		return err
	}
	j.imported = true
	return nil
}

// download runs the swarm download and, beside it, loads every newly
// complete prefix of layers into the daemon. files[i] gets layer i's path.
func (s *transferStep) download(ctx context.Context, loader Import, files []string) error {
	j := s.j
	var mu sync.Mutex
	finished := false
	ready := make(chan struct{}, 1)
	wake := func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	}
	onDone := func(l jobspec.Layer, path string) {
		mu.Lock()
		for i := j.present; i < len(files); i++ {
			if j.spec.Layers[i].Digest == l.Digest {
				files[i] = path
			}
		}
		mu.Unlock()
		j.prog.layerDone(l.Digest)
		j.log.Debug("layer downloaded", "digest", l.Digest)
		wake()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := j.leecher.Download(gctx, j.missing(), onDone)
		mu.Lock()
		finished = true
		mu.Unlock()
		wake()
		if err != nil {
			return fmt.Errorf("download layers: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		for {
			mu.Lock()
			n := j.present
			for n < len(files) && files[n] != "" {
				n++
			}
			snapshot, over := slices.Clone(files), finished
			mu.Unlock()
			switch {
			case n == len(files):
				return nil
			case !j.opts.Serial && n > loader.Registered():
				if err := loader.LoadPrefix(gctx, n, snapshot); err != nil {
					return err
				}
				j.log.Info("loaded layers ahead", "layers", n)
				continue
			case over:
				return fmt.Errorf("download ended without layer %s", j.spec.Layers[n].Digest)
			}
			select {
			case <-ready:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	return g.Wait()
}

// pullStep is registry mode: a plain pull, then the same check.
type pullStep struct {
	j         *job
	committed bool
}

func (s *pullStep) Title() string { return "pull from the registry" }

func (s *pullStep) Run(ctx context.Context) error {
	j := s.j
	undo, err := j.daemon.Record(ctx, j.ref, j.spec.ImageID)
	if err != nil {
		return err
	}
	j.undo = undo
	pp := &dockerimage.PullProgress{}
	j.prog.setPull(pp, j.spec.Layers)
	j.ev.state(jobspec.StateDownloading, "")
	if err := j.daemon.Pull(ctx, j.spec.Image, j.spec.RegistryAuth, pp); err != nil {
		return err
	}
	j.ev.state(jobspec.StateImporting, "")
	var diffIDs []string
	if len(j.spec.Config) > 0 {
		if diffIDs, err = dockerimage.DiffIDs(j.spec.Config); err != nil {
			return err
		}
	}
	img, err := j.daemon.Check(ctx, j.spec.Image, j.spec.ImageID, diffIDs)
	if err != nil {
		return err
	}
	j.imageID = img.ID
	s.committed = true
	return nil
}

func (s *pullStep) Cleanup(ctx context.Context) error {
	if s.committed || s.j.undo == nil {
		return nil
	}
	return s.j.undo.Rollback(ctx)
}

// doneStep reports the image in place and keeps the node (and its swarm
// client, seeding) running until the bastion ends the job.
type doneStep struct{ j *job }

func (s *doneStep) Title() string { return "seed until the bastion ends the job" }

func (s *doneStep) Run(ctx context.Context) error {
	j := s.j
	j.sendProgress(time.Now())
	j.prog.setDone()
	id := j.imageID
	if id == "" {
		id = j.spec.ImageID
	}
	j.ev.emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDone, ImageID: id})
	<-ctx.Done()
	return context.Cause(ctx)
}

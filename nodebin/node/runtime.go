package node

import (
	"context"
	"errors"

	"github.com/layercast/layercast/nodebin/containerdimage"
	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// Runtime is the container runtime on the host that a p2p job's image goes
// into: the Docker daemon or containerd (spec.Runtime).
type Runtime interface {
	// Name is the runtime as messages name it: "docker", "containerd".
	Name() string
	// Begin records the runtime's state before the job and finds which
	// leading layers it already has.
	Begin(ctx context.Context, img RuntimeImage) (Import, error)
	// StorageDirs are the local directories an import writes into, each
	// taking about the size of the missing layers; nil when unknown or
	// not on this host.
	StorageDirs(ctx context.Context) []StorageDir
	// RemoveEnded removes what other jobs that are over (over(job)) left
	// in the runtime because their node could not clean up: temporary
	// images, an import lease. It returns what it removed, for the log.
	RemoveEnded(ctx context.Context, ownJob string, over func(job string) bool) ([]string, error)
	Close() error
}

// RuntimeImage is the job's image as a runtime imports it.
type RuntimeImage struct {
	Ref    string // the tag to give it: the spec's image with a tag, no digest
	ID     string // the config's digest
	Config []byte
	Layers []jobspec.Layer
	Job    string
}

// StorageDir is a directory an import writes into.
type StorageDir struct {
	Path, What string
}

// Import is one job's import into a runtime, from Begin until Commit or
// Rollback.
type Import interface {
	// Present is how many leading layers the runtime had before the job
	// (all of them when it had the image).
	Present() int
	// Had reports whether the runtime had the image before the job.
	Had() bool
	// Registered is how many leading layers the runtime has now.
	Registered() int
	// LoadPrefix imports the layers up to n (exclusive) while later ones
	// still download; files[i] is the verified file of layer i.
	LoadPrefix(ctx context.Context, n int, files []string) error
	// Finish imports the rest, names the image and checks the result.
	Finish(ctx context.Context, files []string) error
	// Commit drops what only served the import (temporary images, a lease).
	Commit(ctx context.Context) error
	// Rollback removes everything the job created; an image that existed
	// before the job stays.
	Rollback(ctx context.Context) error
}

// dockerRuntime imports through docker load (nodebin/dockerimage).
type dockerRuntime struct {
	api    DockerAPI
	daemon *dockerimage.Daemon
	host   string
}

func (r *dockerRuntime) Name() string { return jobspec.RuntimeDocker }

func (r *dockerRuntime) Close() error { return r.api.Close() }

func (r *dockerRuntime) StorageDirs(ctx context.Context) []StorageDir {
	if !daemonIsLocal(r.host) {
		return nil
	}
	root, err := r.daemon.RootDir(ctx)
	if err != nil || root == "" {
		return nil
	}
	// A lower bound: the daemon may keep the archive while it loads.
	return []StorageDir{{Path: root, What: "docker data root"}}
}

func (r *dockerRuntime) RemoveEnded(ctx context.Context, ownJob string, over func(string) bool) ([]string, error) {
	return removeDeadTemps(ctx, r.daemon, ownJob, over)
}

func (r *dockerRuntime) Begin(ctx context.Context, img RuntimeImage) (Import, error) {
	undo, err := r.daemon.Record(ctx, img.Ref, img.ID)
	if err != nil {
		return nil, err
	}
	present := len(img.Layers)
	if !undo.Had(img.ID) {
		var chains []string
		for _, l := range img.Layers {
			chains = append(chains, l.ChainID)
		}
		if present, err = r.daemon.PresentPrefix(ctx, chains); err != nil {
			return nil, err
		}
	}
	var names []string
	for _, l := range img.Layers {
		names = append(names, dockerimage.LayerName(l.Digest))
	}
	loader, err := r.daemon.NewLoader(undo, dockerimage.Image{
		Ref: img.Ref, ID: img.ID, Config: img.Config, Names: names, Job: img.Job,
	}, present)
	if err != nil {
		return nil, err
	}
	return &dockerImport{Loader: loader, undo: undo, id: img.ID, present: present}, nil
}

// dockerImport is a docker-load import: the Loader's prefix loads, the
// Undo's temporary images and rollback.
type dockerImport struct {
	*dockerimage.Loader
	undo    *dockerimage.Undo
	id      string
	present int
}

func (d *dockerImport) Present() int                       { return d.present }
func (d *dockerImport) Had() bool                          { return d.undo.Had(d.id) }
func (d *dockerImport) Commit(ctx context.Context) error   { return d.undo.DropTemps(ctx) }
func (d *dockerImport) Rollback(ctx context.Context) error { return d.undo.Rollback(ctx) }

// ContainerdRuntime imports into containerd through c.
func ContainerdRuntime(c *containerdimage.Client) Runtime { return containerdRuntime{c} }

type containerdRuntime struct{ c *containerdimage.Client }

func (r containerdRuntime) Name() string { return jobspec.RuntimeContainerd }

func (r containerdRuntime) Close() error { return r.c.Close() }

func (r containerdRuntime) StorageDirs(context.Context) []StorageDir {
	var out []StorageDir
	for _, root := range r.c.Roots() {
		out = append(out, StorageDir{Path: root.Path, What: root.What})
	}
	return out
}

func (r containerdRuntime) RemoveEnded(ctx context.Context, ownJob string, over func(string) bool) ([]string, error) {
	jobs, err := r.c.JobLeases(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, job := range jobs {
		if job == ownJob || !over(job) {
			continue
		}
		if err := r.c.DropJobLease(ctx, job); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "lease "+containerdimage.LeaseID(job))
	}
	return removed, errors.Join(errs...)
}

func (r containerdRuntime) Begin(ctx context.Context, img RuntimeImage) (Import, error) {
	name, err := containerdimage.ImageName(img.Ref)
	if err != nil {
		return nil, err
	}
	im, err := r.c.Begin(ctx, containerdimage.Image{Name: name, ID: img.ID, Config: img.Config, Layers: img.Layers, Job: img.Job})
	if err != nil {
		return nil, err
	}
	return im, nil
}

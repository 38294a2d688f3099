package dockerimage

import (
	"context"
	"errors"
	"fmt"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Undo records what the daemon held before a job, so that everything the
// job created can be removed again: temporary images, the image itself if
// it is new, and the tag, pointed back where it was.
type Undo struct {
	d          *Daemon
	ref        string
	id         string          // the job's image ID, when known
	before     map[string]bool // image IDs present before the job
	priorRefID string          // what ref pointed to before the job
	temps      []string        // temporary tags the job created
}

// Record notes the daemon's state before a job that puts the image id
// (empty if unknown) into the daemon as ref.
func (d *Daemon) Record(ctx context.Context, ref, id string) (*Undo, error) {
	before, err := d.ImageIDs(ctx)
	if err != nil {
		return nil, err
	}
	prior, found, err := d.Inspect(ctx, ref)
	if err != nil {
		return nil, err
	}
	u := &Undo{d: d, ref: ref, id: id, before: before}
	if found {
		u.priorRefID = prior.ID
	}
	return u, nil
}

// Had reports whether the daemon held image id before the job.
func (u *Undo) Had(id string) bool { return u.before[id] }

// DropTemps removes the temporary images; called once the image is in.
func (u *Undo) DropTemps(ctx context.Context) error {
	var errs []error
	for _, t := range u.temps {
		errs = append(errs, u.d.Remove(ctx, t, false))
	}
	u.temps = nil
	return errors.Join(errs...)
}

// Rollback removes everything the job created and points the tag back to
// the image it named before. An image that existed before the job is never
// removed.
func (u *Undo) Rollback(ctx context.Context) error {
	errs := []error{u.DropTemps(ctx)}
	cur, found, err := u.d.Inspect(ctx, u.ref)
	errs = append(errs, err)
	var created []string
	if found && cur.ID != u.priorRefID {
		switch {
		case u.priorRefID != "":
			errs = append(errs, u.d.Tag(ctx, u.priorRefID, u.ref))
		case !u.before[cur.ID]:
			// The image goes below, its tag with it.
		case len(cur.RepoTags)+len(cur.RepoDigests) > 1:
			errs = append(errs, u.d.Remove(ctx, u.ref, false))
		default:
			// Untagging the only reference of an image would delete
			// an image the job did not create.
			u.d.log.Warn("leaving tag on an image that existed before the job", "ref", u.ref, "id", cur.ID)
		}
		if !u.before[cur.ID] {
			created = append(created, cur.ID)
		}
	}
	if u.id != "" && !u.before[u.id] {
		created = append(created, u.id)
	}
	for _, id := range created {
		errs = append(errs, u.d.Remove(ctx, id, true))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo image changes: %w", err)
	}
	return nil
}

// Image is an image to load from layer files.
type Image struct {
	Ref    string // tag to give it
	ID     string // digest of Config
	Config []byte
	// Names are the archive names of the layer files, in image order.
	Names []string
	// Job names the temporary images.
	Job string
}

// Loader loads an image layer prefix by layer prefix: while later layers
// are still downloading, the downloaded prefix is loaded as a temporary
// image, which registers its layers; the final load skips them by chain ID.
type Loader struct {
	d          *Daemon
	undo       *Undo
	img        Image
	diffIDs    []string
	registered int
}

// NewLoader prepares loading img into a daemon that already has its first
// present layers. Changes are recorded in undo.
func (d *Daemon) NewLoader(undo *Undo, img Image, present int) (*Loader, error) {
	if Digest(img.Config) != img.ID {
		return nil, fmt.Errorf("image config hashes to %s, not to the image ID %s", Digest(img.Config), img.ID)
	}
	diffIDs, err := DiffIDs(img.Config)
	if err != nil {
		return nil, err
	}
	if len(diffIDs) != len(img.Names) {
		return nil, fmt.Errorf("image config has %d layers, job has %d", len(diffIDs), len(img.Names))
	}
	return &Loader{d: d, undo: undo, img: img, diffIDs: diffIDs, registered: present}, nil
}

// Registered is how many leading layers the daemon has now.
func (l *Loader) Registered() int { return l.registered }

// archive lists the first n layers, with the files of those the daemon
// does not have yet.
func (l *Loader) archive(config []byte, tags []string, n int, files []string) Archive {
	a := Archive{Config: config, RepoTags: tags}
	for i := range n {
		al := ArchiveLayer{Name: l.img.Names[i]}
		if i >= l.registered {
			al.File = files[i]
		}
		a.Layers = append(a.Layers, al)
	}
	return a
}

// LoadPrefix loads the first n layers as a temporary image. files[i] is
// the verified file of layer i, needed for layers not yet registered.
func (l *Loader) LoadPrefix(ctx context.Context, n int, files []string) error {
	if n <= l.registered || n >= len(l.diffIDs) {
		return fmt.Errorf("load prefix of %d layers: %d registered of %d", n, l.registered, len(l.diffIDs))
	}
	config, err := PrefixConfig(l.img.Config, n)
	if err != nil {
		return err
	}
	tag := jobspec.TempRef(l.img.Job, n)
	l.undo.temps = append(l.undo.temps, tag)
	if err := l.d.Load(ctx, l.archive(config, []string{tag}, n, files)); err != nil {
		return fmt.Errorf("load layers %d-%d: %w", l.registered+1, n, err)
	}
	if _, err := l.d.Check(ctx, tag, Digest(config), l.diffIDs[:n]); err != nil {
		return fmt.Errorf("load layers %d-%d: %w", l.registered+1, n, err)
	}
	l.registered = n
	return nil
}

// Finish loads the whole image under its tag (only tags it if the daemon
// already has the image) and checks the result: the tag must name the
// image ID with the config's layers.
func (l *Loader) Finish(ctx context.Context, files []string) error {
	if l.undo.Had(l.img.ID) {
		if err := l.d.Tag(ctx, l.img.ID, l.img.Ref); err != nil {
			return err
		}
	} else if err := l.d.Load(ctx, l.archive(l.img.Config, []string{l.img.Ref}, len(l.diffIDs), files)); err != nil {
		return err
	}
	l.registered = len(l.diffIDs)
	_, err := l.d.Check(ctx, l.img.Ref, l.img.ID, l.diffIDs)
	return err
}

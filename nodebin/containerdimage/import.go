package containerdimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// ErrImageMismatch means the image containerd holds under the job's name is
// not the job's image, or not completely unpacked.
var ErrImageMismatch = errors.New("image in containerd does not match the job")

// leaseLifetime bounds how long a lease left by a killed node holds what it
// covers: containerd's garbage collector drops it after that.
const leaseLifetime = 24 * time.Hour

// Import is one job's import into containerd. Begin records what containerd
// held, LoadPrefix and Finish put the image in, Commit hands everything to
// the image, Rollback removes what the job created.
type Import struct {
	c   *Client
	img Image

	lease   string
	leased  bool // the lease exists
	present int  // leading layers containerd had: unpacked, or in the content store
	// unpacked is how many leading layers are committed snapshots.
	unpacked int
	had      bool // Name named this image, unpacked, before the job

	prior *imageRecord // what Name named before, nil if nothing
	// idNamed: an image named by the ID ("sha256:..."), which the CRI
	// plugin adds for every image, existed before the job.
	idNamed        bool
	manifestDigest string
	configExisted  bool
	priorSnapLabel string // the config's snapshot GC label before the job
	touchedImage   bool   // Name was created or changed
	touchedConfig  bool   // the config's snapshot GC label was set

	ingests []string // content refs written to
	active  []string // snapshot keys prepared and not yet committed or removed
}

// Begin records containerd's state before the job, takes a lease that holds
// everything the import writes until the image holds it (and the image Name
// named before, until the job commits or rolls back), and finds how
// many leading layers containerd already has: a committed snapshot with the
// layer's chain ID, or the layer's blob in the content store (unpacked
// without downloading it). What it finds is added to the lease so that the
// garbage collector cannot remove it while the job runs.
func (c *Client) Begin(ctx context.Context, img Image) (*Import, error) {
	if err := img.check(); err != nil {
		return nil, err
	}
	_, md, _, err := img.manifest()
	if err != nil {
		return nil, err
	}
	im := &Import{c: c, img: img, lease: LeaseID(img.Job), manifestDigest: md.Digest}
	err = c.guard(ctx, func(ctx context.Context) error {
		nctx := c.ns(ctx)
		if err := im.record(nctx); err != nil {
			return err
		}
		now := time.Now().UTC()
		err := c.apiLeaseCreate(nctx, im.lease, map[string]string{
			labelGCExpire: now.Add(leaseLifetime).Format(time.RFC3339),
			labelJob:      img.Job,
		})
		if err != nil {
			return fmt.Errorf("create lease %s: %w", im.lease, err)
		}
		im.leased = true
		if im.prior != nil {
			// While Name names the job's image, nothing else may hold
			// what it named before; the lease keeps it (its manifest's
			// GC labels hold config, layers and snapshots) so that a
			// rollback can name it again.
			if err := im.leaseResource(nctx, "content", im.prior.Target.Digest); err != nil {
				return err
			}
		}
		return im.findPresent(c.withLease(ctx, im.lease))
	})
	if err != nil {
		if im.leased {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			err = errors.Join(err, im.Rollback(cctx))
		}
		return nil, err
	}
	return im, nil
}

// record notes what Name and the config were before the job.
func (im *Import) record(ctx context.Context) error {
	c := im.c
	prior, err := c.apiImageGet(ctx, im.img.Name)
	switch {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("get image %s: %w", im.img.Name, err)
	default:
		im.prior = &prior
	}
	switch _, err := c.apiImageGet(ctx, im.img.ID); {
	case err == nil:
		im.idNamed = true
	case !isNotFound(err):
		return fmt.Errorf("get image %s: %w", im.img.ID, err)
	}
	info, found, err := c.contentInfo(ctx, im.img.ID)
	if err != nil {
		return err
	}
	if found {
		im.configExisted = true
		im.priorSnapLabel = info.Labels[labelGCRefSnapshot+c.snapshotter]
	}
	return nil
}

// findPresent sets present and unpacked, leasing what it finds.
func (im *Import) findPresent(ctx context.Context) error {
	c := im.c
	for i, l := range im.img.Layers {
		found, err := c.committed(ctx, l.ChainID)
		if err != nil {
			return err
		}
		if found {
			if err := im.leaseResource(ctx, "snapshots/"+c.snapshotter, l.ChainID); err != nil {
				return err
			}
			if im.unpacked == i {
				im.unpacked = i + 1
			}
			im.present = i + 1
			continue
		}
		_, found, err = c.contentInfo(ctx, l.Digest)
		if err != nil {
			return err
		}
		if !found {
			break
		}
		if err := im.leaseResource(ctx, "content", l.Digest); err != nil {
			return err
		}
		im.present = i + 1
	}
	if im.prior != nil && im.unpacked == len(im.img.Layers) {
		id, err := c.configOf(ctx, im.prior.Target)
		if err != nil {
			return err
		}
		im.had = id == im.img.ID
	}
	return nil
}

func (im *Import) leaseResource(ctx context.Context, typ, id string) error {
	if err := im.c.apiLeaseAddResource(ctx, im.lease, typ, id); err != nil {
		return fmt.Errorf("lease %s %s: %w", typ, id, err)
	}
	return nil
}

// committed reports whether a committed snapshot named name exists.
func (c *Client) committed(ctx context.Context, name string) (bool, error) {
	info, found, err := c.statSnapshot(ctx, name)
	return found && info.Kind == kindCommitted, err
}

func (c *Client) statSnapshot(ctx context.Context, key string) (snapshotInfo, bool, error) {
	info, err := c.apiSnapshotStat(ctx, key)
	switch {
	case isNotFound(err):
		return snapshotInfo{}, false, nil
	case err != nil:
		return snapshotInfo{}, false, fmt.Errorf("stat snapshot %s: %w", key, err)
	}
	return info, true, nil
}

// configOf returns the config digest of the manifest target names, or ""
// when target is not a single image manifest.
func (c *Client) configOf(ctx context.Context, target descriptor) (string, error) {
	m, err := c.readManifest(ctx, target)
	if err != nil || m == nil {
		return "", err
	}
	return m.Config.Digest, nil
}

func (c *Client) readManifest(ctx context.Context, target descriptor) (*manifest, error) {
	switch target.MediaType {
	case MediaTypeManifest, "application/vnd.docker.distribution.manifest.v2+json":
	default:
		return nil, nil
	}
	b, err := c.readBlob(ctx, target.Digest, jobspec.MaxLine)
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest %s: %w", target.Digest, err)
	}
	return &m, nil
}

// Present is how many leading layers containerd had before the job.
func (im *Import) Present() int { return im.present }

// Had reports whether the image's name named the image, fully unpacked,
// before the job: nothing to download or write.
func (im *Import) Had() bool { return im.had }

// Registered is how many leading layers containerd has now, unpacked or
// ready to unpack from its content store.
func (im *Import) Registered() int { return max(im.present, im.unpacked) }

// Unpacked is how many leading layers are committed snapshots now.
func (im *Import) Unpacked() int { return im.unpacked }

// LoadPrefix unpacks the layers up to n (exclusive) that are not unpacked
// yet, while later layers still download. files[i] is the verified file of
// layer i; it may be empty for a layer containerd has in its content store.
func (im *Import) LoadPrefix(ctx context.Context, n int, files []string) error {
	if n <= im.Registered() || n >= len(im.img.Layers) {
		return fmt.Errorf("unpack prefix of %d layers: %d registered of %d", n, im.Registered(), len(im.img.Layers))
	}
	return im.unpackTo(ctx, n, files)
}

func (im *Import) unpackTo(ctx context.Context, n int, files []string) error {
	for im.unpacked < n {
		i := im.unpacked
		file := ""
		if i < len(files) {
			file = files[i]
		}
		if err := im.c.guard(ctx, func(ctx context.Context) error {
			return im.unpack(im.c.withLease(ctx, im.lease), i, file)
		}); err != nil {
			return fmt.Errorf("unpack layer %d of %d: %w", i+1, len(im.img.Layers), err)
		}
		im.unpacked = i + 1
	}
	return nil
}

// unpack writes layer i's file (if given) into the content store and
// applies it onto its parent as the committed snapshot named by its chain
// ID, checking that what was applied has the layer's diff ID.
func (im *Import) unpack(ctx context.Context, i int, file string) error {
	c, l := im.c, im.img.Layers[i]
	// Another client may have unpacked it meanwhile.
	if ok, err := c.committed(ctx, l.ChainID); err != nil || ok {
		if ok {
			err = im.leaseResource(ctx, "snapshots/"+c.snapshotter, l.ChainID)
		}
		return err
	}
	mt, err := layerMediaType(l.MediaType)
	if err != nil {
		return err
	}
	d := descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size}
	if file != "" {
		var labels map[string]string
		if l.Digest != l.DiffID {
			labels = map[string]string{labelUncompressed: l.DiffID}
		}
		ref := im.ref(strings.TrimPrefix(l.Digest, "sha256:"))
		im.ingests = append(im.ingests, ref)
		if err := c.writeFile(ctx, ref, d, file, labels); err != nil {
			return err
		}
	} else if _, found, err := c.contentInfo(ctx, l.Digest); err != nil {
		return err
	} else if !found {
		return fmt.Errorf("layer %s: no file, and not in containerd's content store", l.Digest)
	}

	parent := ""
	if i > 0 {
		parent = im.img.Layers[i-1].ChainID
	}
	key := fmt.Sprintf("%s%s-%d-%s", extractPrefix, safe(im.img.Job), i, strings.TrimPrefix(l.ChainID, "sha256:")[:12])
	im.active = append(im.active, key)
	mounts, err := c.apiSnapshotPrepare(ctx, key, parent)
	if err != nil {
		return fmt.Errorf("prepare snapshot on %q: %w", parent, err)
	}
	applied, err := c.apiDiffApply(ctx, d, mounts)
	if err != nil {
		return fmt.Errorf("apply layer %s: %w", l.Digest, err)
	}
	if applied.Digest != l.DiffID {
		return fmt.Errorf("apply layer %s: diff ID %s, want %s: %w", l.Digest, applied.Digest, l.DiffID, ErrImageMismatch)
	}
	err = c.apiSnapshotCommit(ctx, l.ChainID, key)
	switch {
	case isAlreadyExists(err):
		// Unpacked by someone else meanwhile: theirs serves.
		if err := im.removeActive(ctx, key); err != nil {
			return err
		}
		return im.leaseResource(ctx, "snapshots/"+c.snapshotter, l.ChainID)
	case err != nil:
		return fmt.Errorf("commit snapshot %s: %w", l.ChainID, err)
	}
	im.active = slices.DeleteFunc(im.active, func(k string) bool { return k == key })
	return nil
}

func (im *Import) ref(what string) string {
	return ingestPrefix + safe(im.img.Job) + "-" + what
}

func (im *Import) removeActive(ctx context.Context, key string) error {
	if err := im.c.apiSnapshotRemove(ctx, key); err != nil && !isNotFound(err) {
		return fmt.Errorf("remove snapshot %s: %w", key, err)
	}
	im.active = slices.DeleteFunc(im.active, func(k string) bool { return k == key })
	return nil
}

// Finish unpacks the layers left, writes the config and the manifest with
// the labels that make the image hold its layers and snapshots, points Name
// at the manifest, and checks the result.
func (im *Import) Finish(ctx context.Context, files []string) error {
	if err := im.unpackTo(ctx, len(im.img.Layers), files); err != nil {
		return err
	}
	if !im.had {
		if err := im.c.guard(ctx, func(ctx context.Context) error { return im.createImage(im.c.withLease(ctx, im.lease)) }); err != nil {
			return err
		}
	}
	return im.c.guard(ctx, func(ctx context.Context) error {
		return im.c.Check(ctx, im.img.Name, im.img.ID, im.img.Layers)
	})
}

func (im *Import) createImage(ctx context.Context) error {
	c, img := im.c, im.img
	top := img.Layers[len(img.Layers)-1].ChainID
	snapLabel := map[string]string{labelGCRefSnapshot + c.snapshotter: top}
	cd := descriptor{MediaType: MediaTypeConfig, Digest: img.ID, Size: int64(len(img.Config))}
	im.ingests = append(im.ingests, im.ref("config"))
	if err := c.writeBytes(ctx, im.ref("config"), cd, img.Config, snapLabel); err != nil {
		return fmt.Errorf("write image config: %w", err)
	}
	if im.priorSnapLabel != top {
		im.touchedConfig = true
		if err := c.setLabels(ctx, img.ID, snapLabel); err != nil {
			return err
		}
	}
	mb, md, mlabels, err := img.manifest()
	if err != nil {
		return err
	}
	im.ingests = append(im.ingests, im.ref("manifest"))
	if err := c.writeBytes(ctx, im.ref("manifest"), md, mb, mlabels); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := c.setLabels(ctx, md.Digest, mlabels); err != nil {
		return err
	}
	im.touchedImage = true
	err = c.apiImageCreate(ctx, imageRecord{Name: img.Name, Target: md})
	if isAlreadyExists(err) {
		err = c.apiImageUpdate(ctx, imageRecord{Name: img.Name, Target: md}, "target")
	}
	if err != nil {
		return fmt.Errorf("create image %s: %w", img.Name, err)
	}
	return nil
}

// Check verifies that name names the image with config digest id whose
// layers are layers, every one of them unpacked for the client's
// snapshotter under its chain ID, and that the config holds the top
// snapshot for the garbage collector.
func (c *Client) Check(ctx context.Context, name, id string, layers []jobspec.Layer) error {
	ctx = c.ns(ctx)
	rec, err := c.apiImageGet(ctx, name)
	switch {
	case isNotFound(err):
		return fmt.Errorf("check image: %s is not in containerd: %w", name, ErrImageMismatch)
	case err != nil:
		return fmt.Errorf("check image: %w", err)
	}
	m, err := c.readManifest(ctx, rec.Target)
	switch {
	case err != nil:
		return fmt.Errorf("check image: %w", err)
	case m == nil:
		return fmt.Errorf("check image: %s is a %s, want an image manifest: %w", name, rec.Target.MediaType, ErrImageMismatch)
	case m.Config.Digest != id:
		return fmt.Errorf("check image: %s has config %s, want %s: %w", name, m.Config.Digest, id, ErrImageMismatch)
	case len(m.Layers) != len(layers):
		return fmt.Errorf("check image: %s has %d layers, want %d: %w", name, len(m.Layers), len(layers), ErrImageMismatch)
	}
	config, err := c.readBlob(ctx, id, jobspec.MaxLine)
	if err != nil {
		return fmt.Errorf("check image: %w", err)
	}
	diffIDs, err := dockerimage.DiffIDs(config)
	if err != nil {
		return fmt.Errorf("check image: %w", err)
	}
	chains := jobspec.ChainIDs(diffIDs)
	for i, l := range layers {
		if diffIDs[i] != l.DiffID {
			return fmt.Errorf("check image: layer %d has diff ID %s, want %s: %w", i+1, diffIDs[i], l.DiffID, ErrImageMismatch)
		}
		info, found, err := c.statSnapshot(ctx, chains[i])
		if err != nil {
			return fmt.Errorf("check image: %w", err)
		}
		parent := ""
		if i > 0 {
			parent = chains[i-1]
		}
		if !found || info.Kind != kindCommitted || info.Parent != parent {
			return fmt.Errorf("check image: layer %d (chain ID %s) is not unpacked for %s: %w", i+1, chains[i], c.snapshotter, ErrImageMismatch)
		}
	}
	info, _, err := c.contentInfo(ctx, id)
	if err != nil {
		return fmt.Errorf("check image: %w", err)
	}
	if got := info.Labels[labelGCRefSnapshot+c.snapshotter]; got != chains[len(chains)-1] {
		return fmt.Errorf("check image: config holds snapshot %q, want %s: %w", got, chains[len(chains)-1], ErrImageMismatch)
	}
	return nil
}

// Commit ends the job's lease once the image holds everything: the
// garbage collector keeps what the image refers to.
func (im *Import) Commit(ctx context.Context) error {
	if !im.leased {
		return nil
	}
	if err := im.c.apiLeaseDelete(im.c.ns(ctx), im.lease, false); err != nil && !isNotFound(err) {
		return fmt.Errorf("release lease %s: %w", im.lease, err)
	}
	im.leased = false
	return nil
}

// Rollback removes what the job created: its ingests, its unfinished
// snapshots, the image name (or points it back where it was), the config's
// snapshot label, and the lease, collected at once so that content and
// snapshots only the job held go with it. An image that existed before is
// never removed. Calls are retried while containerd is away, until ctx
// ends, so that a daemon that restarts is still cleaned.
func (im *Import) Rollback(ctx context.Context) error {
	c := im.c
	nctx := c.ns(ctx)
	var errs []error
	for _, ref := range im.ingests {
		errs = append(errs, im.abortIngest(nctx, ref))
	}
	im.ingests = nil
	for _, key := range slices.Clone(im.active) {
		errs = append(errs, retry(nctx, func(ctx context.Context) error { return im.removeActive(ctx, key) }))
	}
	dropIDName := func(ctx context.Context) error {
		_, err := im.dropIDName(ctx)
		return err
	}
	if im.touchedImage {
		errs = append(errs, retry(nctx, func(ctx context.Context) error { return im.restoreImage(ctx, false) }))
		errs = append(errs, retry(nctx, dropIDName))
	}
	if im.touchedConfig && im.configExisted {
		errs = append(errs, retry(nctx, func(ctx context.Context) error {
			return c.setLabels(ctx, im.img.ID, map[string]string{labelGCRefSnapshot + c.snapshotter: im.priorSnapLabel})
		}))
	}
	if im.leased {
		errs = append(errs, retry(nctx, func(ctx context.Context) error {
			if err := c.apiLeaseDelete(ctx, im.lease, true); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete lease %s: %w", im.lease, err)
			}
			im.leased = false
			return nil
		}))
	}
	if im.touchedImage {
		// The CRI plugin may have named the image by its ID while the
		// name was being removed.
		errs = append(errs, retry(nctx, dropIDName))
		if c.cri {
			errs = append(errs, im.settleCRI(nctx))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo containerd changes: %w", err)
	}
	return nil
}

// dropIDName deletes the image named by the job's image ID when it did not
// exist before the job and names the job's manifest: the CRI plugin of a
// Kubernetes node adds that name for every image it sees created. It says
// whether there was such a name.
func (im *Import) dropIDName(ctx context.Context) (bool, error) {
	if im.idNamed {
		return false, nil
	}
	rec, err := im.c.apiImageGet(ctx, im.img.ID)
	switch {
	case isNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("get image %s: %w", im.img.ID, err)
	case rec.Target.Digest != im.manifestDigest:
		return false, nil
	}
	if err := im.c.apiImageDelete(ctx, im.img.ID, true); err != nil && !isNotFound(err) {
		return false, fmt.Errorf("delete image %s: %w", im.img.ID, err)
	}
	return true, nil
}

// How long a rollback on a CRI host watches for the plugin naming the job's
// image again: until neither name came back for criQuiet, at most
// criSettleMax.
const (
	criQuiet     = 3 * time.Second
	criSettleMax = 30 * time.Second
)

// settleCRI undoes what the CRI plugin does late. The plugin handles each
// image event on its own goroutine: it reads the image, then names it by
// its ID, then names it again by Name (creating the name if it is gone).
// When it read the job's image before the rollback removed it, it brings
// Name (pointing at the job's manifest) and the ID name back after the
// rollback. settleCRI removes them again, or points Name back at what it
// named before, until the plugin has been quiet for criQuiet.
func (im *Import) settleCRI(ctx context.Context) error {
	deadline := time.Now().Add(criSettleMax)
	quietSince := time.Now()
	for time.Since(quietSince) < criQuiet {
		if time.Now().After(deadline) {
			return fmt.Errorf("the CRI plugin kept naming the job's image %s for %s", im.img.Name, criSettleMax)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		var back bool
		err := retry(ctx, func(ctx context.Context) (err error) {
			back, err = im.undoCRINames(ctx)
			return err
		})
		if err != nil {
			return err
		}
		if back {
			quietSince = time.Now()
		}
	}
	return nil
}

// undoCRINames removes the names of the job's manifest that the rollback
// removed and the CRI plugin put back, and says whether there were any.
func (im *Import) undoCRINames(ctx context.Context) (bool, error) {
	var back bool
	rec, err := im.c.apiImageGet(ctx, im.img.Name)
	switch {
	case isNotFound(err):
	case err != nil:
		return false, fmt.Errorf("get image %s: %w", im.img.Name, err)
	case rec.Target.Digest == im.manifestDigest && (im.prior == nil || im.prior.Target.Digest != im.manifestDigest):
		back = true
		// sync: the garbage collector takes what the name held before
		// the rollback returns.
		if err := im.restoreImage(ctx, true); err != nil {
			return false, err
		}
	}
	dropped, err := im.dropIDName(ctx)
	return back || dropped, err
}

// abortIngest drops ingest ref. A write the job cancelled may still hold
// the ingest on containerd's side for a moment ("directory not empty"), so
// a failed abort is tried again for a few seconds.
func (im *Import) abortIngest(ctx context.Context, ref string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := retry(ctx, func(ctx context.Context) error { return im.c.abort(ctx, ref) })
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// restoreImage points Name back at what it named before, or deletes it
// (with sync, waiting for the garbage collector).
func (im *Import) restoreImage(ctx context.Context, sync bool) error {
	c := im.c
	if im.prior != nil {
		if err := c.apiImageUpdate(ctx, *im.prior, "target", "labels"); err != nil {
			return fmt.Errorf("restore image %s: %w", im.img.Name, err)
		}
		return nil
	}
	if err := c.apiImageDelete(ctx, im.img.Name, sync); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete image %s: %w", im.img.Name, err)
	}
	return nil
}

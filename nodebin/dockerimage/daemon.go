package dockerimage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// API is the part of the Docker client the node uses. *client.Client
// implements it; FakeDaemon is an in-memory one for tests.
type API interface {
	ImageList(ctx context.Context, options image.ListOptions) ([]image.Summary, error)
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImageLoad(ctx context.Context, input io.Reader, opts ...client.ImageLoadOption) (image.LoadResponse, error)
	ImageTag(ctx context.Context, source, target string) error
	ImageRemove(ctx context.Context, ref string, options image.RemoveOptions) ([]image.DeleteResponse, error)
	ImagePull(ctx context.Context, ref string, options image.PullOptions) (io.ReadCloser, error)
	Info(ctx context.Context) (system.Info, error)
}

// ErrImageMismatch means the daemon's image is not the one the job asked
// for, whatever the load or pull reported.
var ErrImageMismatch = errors.New("image in the daemon does not match the job")

// Connect opens a client for the local daemon: DOCKER_HOST and friends from
// the environment, host overriding them when set, API version negotiated.
// It pings the daemon so that a missing daemon or socket permission fails
// here, with the daemon's address in the message.
func Connect(ctx context.Context, host string) (*client.Client, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if _, err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("reach docker daemon at %s (is it running, and may this user use it?): %w", c.DaemonHost(), err)
	}
	return c, nil
}

// Daemon wraps an API with the operations of one job.
type Daemon struct {
	api API
	log *slog.Logger
	// grace is how long an interrupted load may take to answer: a daemon
	// that already holds the whole archive finishes the load regardless,
	// and what it created must be known before it can be removed.
	grace time.Duration
	// loadMarker, when set, is the file each load names its references
	// in while the daemon holds its whole archive (MarkLoadsIn).
	loadMarker string
}

// New returns a Daemon over api.
func New(api API, log *slog.Logger) *Daemon {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Daemon{api: api, log: log, grace: jobspec.LoadGrace}
}

// MarkLoadsIn makes every load name the references it creates in file
// (jobspec.LoadingFile) from the moment the archive is whole until the
// daemon answers: the daemon finishes such a load even when this process
// dies, and whoever cleans up after it then knows which images to wait
// for.
func (d *Daemon) MarkLoadsIn(file string) { d.loadMarker = file }

// markLoad writes refs to the load marker, whole or not at all. A marker
// that cannot be written only weakens the cleanup after a killed node, so
// it is logged and the load goes on.
func (d *Daemon) markLoad(refs []string) {
	if d.loadMarker == "" || len(refs) == 0 {
		return
	}
	tmp := d.loadMarker + ".tmp"
	err := os.WriteFile(tmp, []byte(strings.Join(refs, "\n")+"\n"), 0o644)
	if err == nil {
		err = os.Rename(tmp, d.loadMarker)
	}
	if err != nil {
		d.log.Warn("mark the load in flight", "file", d.loadMarker, "err", err)
	}
}

// unmarkLoad removes the load marker once the daemon answered.
func (d *Daemon) unmarkLoad() {
	if d.loadMarker == "" {
		return
	}
	if err := os.Remove(d.loadMarker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("remove the load marker", "file", d.loadMarker, "err", err)
	}
}

// Inspect returns the image ref points to, or found=false.
func (d *Daemon) Inspect(ctx context.Context, ref string) (img image.InspectResponse, found bool, err error) {
	img, err = d.api.ImageInspect(ctx, ref)
	switch {
	case cerrdefs.IsNotFound(err):
		return image.InspectResponse{}, false, nil
	case err != nil:
		return image.InspectResponse{}, false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return img, true, nil
}

// PresentPrefix returns how many leading layers of an image with these chain
// IDs the daemon already has. It looks at the layers of every image: a chain
// ID names a layer together with all layers below it, so a match at
// position i means layers 0..i are all present.
func (d *Daemon) PresentPrefix(ctx context.Context, chainIDs []string) (int, error) {
	want := make(map[string]int, len(chainIDs))
	for i, c := range chainIDs {
		want[c] = i + 1
	}
	imgs, err := d.api.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return 0, fmt.Errorf("list images: %w", err)
	}
	best := 0
	for _, s := range imgs {
		img, found, err := d.Inspect(ctx, s.ID)
		if err != nil {
			return 0, err
		}
		if !found {
			continue // removed meanwhile
		}
		for _, c := range jobspec.ChainIDs(img.RootFS.Layers) {
			best = max(best, want[c])
		}
		if best == len(chainIDs) {
			break
		}
	}
	return best, nil
}

// ImageIDs returns the IDs of all images in the daemon.
func (d *Daemon) ImageIDs(ctx context.Context) (map[string]bool, error) {
	imgs, err := d.api.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	ids := make(map[string]bool, len(imgs))
	for _, s := range imgs {
		ids[s.ID] = true
	}
	return ids, nil
}

// RootDir returns the daemon's data root ("Docker Root Dir").
func (d *Daemon) RootDir(ctx context.Context) (string, error) {
	info, err := d.api.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("docker info: %w", err)
	}
	return info.DockerRootDir, nil
}

// Load streams a into the daemon as a docker-save archive and reads the
// daemon's answer to the end, returning any error reported in it.
//
// Cancelling ctx aborts the archive, which makes the daemon fail the load,
// and then waits up to the grace period for the daemon's answer: once the
// daemon has the whole archive it finishes the load whatever the client
// does, so Load returns only when nothing more will appear in the daemon.
func (d *Daemon) Load(ctx context.Context, a Archive) error {
	pr, pw := io.Pipe()
	wrote := make(chan error, 1)
	go func() {
		err := WriteArchive(ctx, pw, a)
		if err == nil {
			// The archive is whole; ending it commits the daemon to it.
			d.markLoad(a.RepoTags)
		}
		pw.CloseWithError(err)
		wrote <- err
	}()

	callCtx, cancelCall := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCall()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.grace, cancelCall)
		context.AfterFunc(callCtx, func() { t.Stop() })
	})
	defer stopGrace()

	err := d.load(callCtx, pr)
	pr.CloseWithError(errLoadAnswered)
	if werr := <-wrote; werr != nil && !errors.Is(werr, errLoadAnswered) {
		// The daemon's answer and the check that follows every load
		// decide; a failed write shows up as a failed load.
		d.log.Debug("write archive", "err", werr)
	}
	if callCtx.Err() == nil {
		// The daemon answered: nothing of this load is still to come.
		d.unmarkLoad()
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("load image: %w", context.Cause(ctx))
	case err != nil:
		return fmt.Errorf("load image: %w", err)
	}
	return nil
}

var errLoadAnswered = errors.New("daemon answered the load")

func (d *Daemon) load(ctx context.Context, r io.Reader) error {
	resp, err := d.api.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !resp.JSON {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	return readMessages(resp.Body, func(m jsonMessage) {
		if m.Stream != "" {
			d.log.Debug("docker load", "msg", m.Stream)
		}
	})
}

// Tag points ref at id.
func (d *Daemon) Tag(ctx context.Context, id, ref string) error {
	if err := d.api.ImageTag(ctx, id, ref); err != nil {
		return fmt.Errorf("tag %s as %s: %w", id, ref, err)
	}
	return nil
}

// Check verifies that ref names the image with ID wantID (when not empty)
// whose layers are wantDiffIDs (when not nil).
func (d *Daemon) Check(ctx context.Context, ref, wantID string, wantDiffIDs []string) (image.InspectResponse, error) {
	img, found, err := d.Inspect(ctx, ref)
	switch {
	case err != nil:
		return img, fmt.Errorf("check image: %w", err)
	case !found:
		return img, fmt.Errorf("check image: %s is not in the daemon: %w", ref, ErrImageMismatch)
	case wantID != "" && img.ID != wantID:
		return img, fmt.Errorf("check image: %s has ID %s, want %s: %w", ref, img.ID, wantID, ErrImageMismatch)
	case wantDiffIDs != nil && !slices.Equal(img.RootFS.Layers, wantDiffIDs):
		return img, fmt.Errorf("check image: %s has layers %v, want %v: %w", ref, img.RootFS.Layers, wantDiffIDs, ErrImageMismatch)
	case len(img.RootFS.Layers) == 0:
		return img, fmt.Errorf("check image: %s has no layers: %w", ref, ErrImageMismatch)
	}
	return img, nil
}

// Remove deletes ref (an image ID or a tag). With force it removes an
// image along with all its tags. A ref that is already gone is not an error.
func (d *Daemon) Remove(ctx context.Context, ref string, force bool) error {
	_, err := d.api.ImageRemove(ctx, ref, image.RemoveOptions{Force: force, PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// jsonMessage is one line of the daemon's progress stream.
type jsonMessage struct {
	Stream         string `json:"stream"`
	Status         string `json:"status"`
	ID             string `json:"id"`
	ProgressDetail struct {
		Current int64 `json:"current"`
		Total   int64 `json:"total"`
	} `json:"progressDetail"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readMessages decodes a progress stream to its end, handing every message
// to fn, and returns the first error the daemon reported in it.
func readMessages(r io.Reader, fn func(jsonMessage)) error {
	dec := json.NewDecoder(r)
	for {
		var m jsonMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read daemon response: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
		fn(m)
	}
}

// TempRefs lists the references of every temporary image in the daemon
// (jobspec.TempRepo), of every job.
func (d *Daemon) TempRefs(ctx context.Context) ([]string, error) {
	imgs, err := d.api.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", jobspec.TempRepo))})
	if err != nil {
		return nil, fmt.Errorf("list temporary images: %w", err)
	}
	var refs []string
	for _, s := range imgs {
		for _, t := range s.RepoTags {
			if strings.HasPrefix(t, jobspec.AnyTempRefPrefix) {
				refs = append(refs, t)
			}
		}
	}
	slices.Sort(refs)
	return refs, nil
}

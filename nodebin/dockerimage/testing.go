package dockerimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// FakeDaemon is an in-memory Docker daemon with the classic image store's
// load semantics: a layer whose chain ID it has is skipped without its file,
// every other layer file is read (gunzipped when compressed) and checked
// against its diff ID, and the image ID is the digest of the config.
type FakeDaemon struct {
	mu     sync.Mutex
	images map[string]*fakeImage // by ID
	refs   map[string]string     // tag -> ID

	// RootDir is what Info reports as the data root.
	RootDir string
	// Registry holds the images ImagePull can fetch, by ref.
	Registry map[string]TestImage
	// DropLoads makes a load answer success without creating anything, as
	// the containerd store of Docker 28 does when an unpack fails.
	DropLoads bool
	// Loads records, per load, the names of the layer files in the archive.
	Loads [][]string
	// OnLoad, when set, runs inside each load before it is applied.
	OnLoad func(ctx context.Context)
}

type fakeImage struct {
	config  []byte
	diffIDs []string
}

// NewFakeDaemon returns an empty fake daemon.
func NewFakeDaemon() *FakeDaemon {
	return &FakeDaemon{images: map[string]*fakeImage{}, refs: map[string]string{}, Registry: map[string]TestImage{}}
}

func notFound(what string) error {
	return fmt.Errorf("no such image: %s: %w", what, cerrdefs.ErrNotFound)
}

// resolve returns the image ID ref names; the caller holds mu.
func (f *FakeDaemon) resolve(ref string) (string, bool) {
	if id, ok := f.refs[ref]; ok {
		return id, true
	}
	for id := range f.images {
		if id == ref || strings.TrimPrefix(id, "sha256:") == ref {
			return id, true
		}
	}
	return "", false
}

func (f *FakeDaemon) tagsOf(id string) []string {
	var tags []string
	for r, i := range f.refs {
		if i == id {
			tags = append(tags, r)
		}
	}
	return tags
}

// chains returns every chain ID the daemon has; the caller holds mu.
func (f *FakeDaemon) chains() map[string]bool {
	have := map[string]bool{}
	for _, img := range f.images {
		for _, c := range jobspec.ChainIDs(img.diffIDs) {
			have[c] = true
		}
	}
	return have
}

// Put adds img under ref as if it had been loaded earlier; ref may be empty.
func (f *FakeDaemon) Put(img TestImage, ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.ID] = &fakeImage{config: img.Config, diffIDs: img.DiffIDs()}
	if ref != "" {
		f.refs[ref] = img.ID
	}
}

// Refs returns every tag and the ID it points to.
func (f *FakeDaemon) Refs() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]string{}
	for r, id := range f.refs {
		out[r] = id
	}
	return out
}

// IDs returns the IDs of all images.
func (f *FakeDaemon) IDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.images {
		ids = append(ids, id)
	}
	return ids
}

func (f *FakeDaemon) ImageList(_ context.Context, _ image.ListOptions) ([]image.Summary, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []image.Summary
	for id := range f.images {
		out = append(out, image.Summary{ID: id, RepoTags: f.tagsOf(id)})
	}
	return out, nil
}

func (f *FakeDaemon) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolve(ref)
	if !ok {
		return image.InspectResponse{}, notFound(ref)
	}
	return image.InspectResponse{
		ID:       id,
		RepoTags: f.tagsOf(id),
		RootFS:   image.RootFS{Type: "layers", Layers: append([]string(nil), f.images[id].diffIDs...)},
	}, nil
}

func (f *FakeDaemon) ImageTag(_ context.Context, source, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolve(source)
	if !ok {
		return notFound(source)
	}
	f.refs[target] = id
	return nil
}

func (f *FakeDaemon) ImageRemove(_ context.Context, ref string, o image.RemoveOptions) ([]image.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.resolve(ref)
	if !ok {
		return nil, notFound(ref)
	}
	tags := f.tagsOf(id)
	if _, isTag := f.refs[ref]; isTag && len(tags) > 1 {
		delete(f.refs, ref)
		return []image.DeleteResponse{{Untagged: ref}}, nil
	}
	if _, isTag := f.refs[ref]; !isTag && len(tags) > 1 && !o.Force {
		return nil, fmt.Errorf("conflict: unable to delete %s: image is referenced in multiple repositories", ref)
	}
	var out []image.DeleteResponse
	for _, t := range tags {
		delete(f.refs, t)
		out = append(out, image.DeleteResponse{Untagged: t})
	}
	delete(f.images, id)
	return append(out, image.DeleteResponse{Deleted: id}), nil
}

func (f *FakeDaemon) Info(context.Context) (system.Info, error) {
	return system.Info{DockerRootDir: f.RootDir}, nil
}

func (f *FakeDaemon) ImageLoad(ctx context.Context, input io.Reader, _ ...client.ImageLoadOption) (image.LoadResponse, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(input)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return image.LoadResponse{}, fmt.Errorf("read archive: %w", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return image.LoadResponse{}, fmt.Errorf("read archive %s: %w", h.Name, err)
		}
		files[h.Name] = b
	}
	// The daemon reads the request to its end before it loads.
	if _, err := io.Copy(io.Discard, input); err != nil {
		return image.LoadResponse{}, fmt.Errorf("read archive: %w", err)
	}
	if f.OnLoad != nil {
		f.OnLoad(ctx)
	}
	if err := ctx.Err(); err != nil {
		return image.LoadResponse{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for n := range files {
		if n != "manifest.json" && !strings.HasSuffix(n, ".json") {
			names = append(names, n)
		}
	}
	f.Loads = append(f.Loads, names)
	msg, err := f.apply(files)
	if err != nil {
		msg = fmt.Sprintf(`{"errorDetail":{"message":%q},"error":%q}`+"\n", err.Error(), err.Error())
	}
	return image.LoadResponse{Body: io.NopCloser(strings.NewReader(msg)), JSON: true}, nil
}

// apply creates the images of a docker-save archive; the caller holds mu.
func (f *FakeDaemon) apply(files map[string][]byte) (string, error) {
	var manifest []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		return "", fmt.Errorf("manifest.json: %w", err)
	}
	var out strings.Builder
	have := f.chains()
	for _, m := range manifest {
		config, ok := files[m.Config]
		if !ok {
			return "", fmt.Errorf("config %s not in archive", m.Config)
		}
		diffIDs, err := DiffIDs(config)
		if err != nil {
			return "", err
		}
		if len(diffIDs) != len(m.Layers) {
			return "", errors.New("invalid manifest, layers length mismatch")
		}
		for i, c := range jobspec.ChainIDs(diffIDs) {
			if have[c] || f.DropLoads {
				continue
			}
			b, ok := files[m.Layers[i]]
			if !ok {
				return "", fmt.Errorf("open %s: no such file or directory", m.Layers[i])
			}
			if got, err := diffID(b); err != nil {
				return "", err
			} else if got != diffIDs[i] {
				return "", fmt.Errorf("invalid diffID for layer %d: expected %q, got %q", i, diffIDs[i], got)
			}
			have[c] = true
		}
		if f.DropLoads {
			continue
		}
		id := Digest(config)
		f.images[id] = &fakeImage{config: config, diffIDs: diffIDs}
		for _, t := range m.RepoTags {
			f.refs[t] = id
			fmt.Fprintf(&out, `{"stream":"Loaded image: %s\n"}`+"\n", t)
		}
		if len(m.RepoTags) == 0 {
			fmt.Fprintf(&out, `{"stream":"Loaded image ID: %s\n"}`+"\n", id)
		}
	}
	return out.String(), nil
}

// diffID is the digest of a layer file's tar stream, gunzipped if needed.
func diffID(b []byte) (string, error) {
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return "", fmt.Errorf("gunzip layer: %w", err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			return "", fmt.Errorf("gunzip layer: %w", err)
		}
	}
	return Digest(b), nil
}

func (f *FakeDaemon) ImagePull(ctx context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.Registry[ref]
	if !ok {
		return nil, fmt.Errorf("pull access denied for %s: %w", ref, cerrdefs.ErrNotFound)
	}
	var out strings.Builder
	have := f.chains()
	for _, l := range img.Layers {
		id := strings.TrimPrefix(l.Digest, "sha256:")[:12]
		if have[l.ChainID] {
			fmt.Fprintf(&out, `{"status":"Already exists","id":%q}`+"\n", id)
			continue
		}
		n := int64(len(l.File))
		fmt.Fprintf(&out, `{"status":"Pulling fs layer","id":%q}`+"\n", id)
		fmt.Fprintf(&out, `{"status":"Downloading","id":%q,"progressDetail":{"current":%d,"total":%d}}`+"\n", id, n/2, n)
		fmt.Fprintf(&out, `{"status":"Download complete","id":%q}`+"\n", id)
		fmt.Fprintf(&out, `{"status":"Pull complete","id":%q}`+"\n", id)
	}
	f.images[img.ID] = &fakeImage{config: img.Config, diffIDs: img.DiffIDs()}
	f.refs[ref] = img.ID
	return io.NopCloser(strings.NewReader(out.String())), nil
}

// TestImage is a generated image: random layer tars and a config.
type TestImage struct {
	ID     string
	Config []byte
	Layers []TestLayer
}

// TestLayer is one layer of a TestImage.
type TestLayer struct {
	File    []byte // as moved through the swarm: tar, or gzipped tar
	DiffID  string
	ChainID string
	Digest  string
}

// DiffIDs returns the layers' diff IDs.
func (t TestImage) DiffIDs() []string {
	var d []string
	for _, l := range t.Layers {
		d = append(d, l.DiffID)
	}
	return d
}

// LayerTar returns a tar holding one file of size random bytes from seed.
func LayerTar(seed uint64, name string, size int) []byte {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(size), Mode: 0o644})
	tw.Write(data)
	tw.Close()
	return buf.Bytes()
}

// NewTestImage builds an image from layer tars (gzipped when gz is set)
// with a config like the one docker build writes, tag noted in its history.
func NewTestImage(tars [][]byte, gz bool, note string) TestImage {
	var t TestImage
	var diffIDs []string
	history := []map[string]any{{"created_by": "ENV NOTE=" + note, "empty_layer": true}}
	for i, b := range tars {
		file := b
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(b)
			zw.Close()
			file = buf.Bytes()
		}
		diffIDs = append(diffIDs, Digest(b))
		t.Layers = append(t.Layers, TestLayer{File: file, DiffID: Digest(b), Digest: Digest(file)})
		history = append(history, map[string]any{"created_by": fmt.Sprintf("ADD layer%d /", i)})
	}
	for i, c := range jobspec.ChainIDs(diffIDs) {
		t.Layers[i].ChainID = c
	}
	t.Config, _ = json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/bin/true"}, "Env": []string{"NOTE=" + note}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      history,
	})
	t.ID = Digest(t.Config)
	return t
}

// WriteFiles writes the layer files into dir, named by digest, and
// returns their paths in layer order.
func (t TestImage) WriteFiles(dir string) ([]string, error) {
	var paths []string
	for _, l := range t.Layers {
		p := filepath.Join(dir, strings.TrimPrefix(l.Digest, "sha256:"))
		if err := os.WriteFile(p, l.File, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// Names returns the archive names of the layers.
func (t TestImage) Names() []string {
	var n []string
	for _, l := range t.Layers {
		n = append(n, LayerName(l.Digest))
	}
	return n
}

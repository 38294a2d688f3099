package imagecache

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// FakeDocker is an in-memory daemon holding one image, for tests.
type FakeDocker struct {
	Ref     string
	ID      string
	DiffIDs []string
	Save    []byte // docker-save tar
	Pulls   int
	Saves   int
	// Pullable makes a missing Ref appear after ImagePull.
	Pullable bool
	present  bool
}

// NewFakeDocker builds an image of the given uncompressed layer contents.
func NewFakeDocker(ref string, layers ...[]byte) *FakeDocker {
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digestOf(l))
	}
	return NewFakeDockerFiles(ref, diffIDs, layers)
}

// NewFakeDockerFiles builds an image whose exported layer files (possibly
// compressed) differ from the diff IDs of its config.
func NewFakeDockerFiles(ref string, diffIDs []string, layers [][]byte) *FakeDocker {
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	return &FakeDocker{Ref: ref, ID: digestOf(cfg), DiffIDs: diffIDs, Save: saveTar(ref, cfg, layers), present: true}
}

// saveTar is a docker-save archive of one image.
func saveTar(ref string, config []byte, layers [][]byte) []byte {
	id := digestOf(config)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(b)
	}
	var paths []string
	for i, l := range layers {
		p := fmt.Sprintf("layer%d/layer.tar", i)
		add(p, l)
		paths = append(paths, p)
	}
	cfgName := id[len("sha256:"):] + ".json"
	add(cfgName, config)
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{ref}, "Layers": paths}})
	add("manifest.json", manifest)
	_ = tw.Close()
	return buf.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Remove makes the image missing from the fake daemon.
func (f *FakeDocker) Remove() { f.present = false }

func (f *FakeDocker) ImageInspect(_ context.Context, ref string, _ ...client.ImageInspectOption) (image.InspectResponse, error) {
	if !f.present || (ref != f.Ref && ref != f.ID) {
		return image.InspectResponse{}, errdefs.NotFound(fmt.Errorf("no such image: %s", ref))
	}
	r := image.InspectResponse{ID: f.ID, RepoTags: []string{f.Ref}, Os: "linux", Architecture: "amd64"}
	r.RootFS.Layers = f.DiffIDs
	return r, nil
}

func (f *FakeDocker) ImagePull(_ context.Context, ref string, _ image.PullOptions) (io.ReadCloser, error) {
	f.Pulls++
	if !f.Pullable || ref != f.Ref {
		return io.NopCloser(bytes.NewReader([]byte(`{"error":"pull access denied for ` + ref + `"}` + "\n"))), nil
	}
	f.present = true
	return io.NopCloser(bytes.NewReader([]byte(`{"status":"Downloaded newer image"}` + "\n"))), nil
}

func (f *FakeDocker) ImageSave(_ context.Context, ids []string, _ ...client.ImageSaveOption) (io.ReadCloser, error) {
	f.Saves++
	if len(ids) != 1 || ids[0] != f.ID {
		return nil, errdefs.NotFound(fmt.Errorf("no such image: %v", ids))
	}
	return io.NopCloser(bytes.NewReader(f.Save)), nil
}

// NewFakeDockerConfig builds a daemon holding the image of this exact
// config (so its ID is the config's digest, as in a registry) with these
// uncompressed layer tars.
func NewFakeDockerConfig(ref string, config []byte, layers [][]byte) *FakeDocker {
	var diffIDs []string
	for _, l := range layers {
		diffIDs = append(diffIDs, digestOf(l))
	}
	return &FakeDocker{Ref: ref, ID: digestOf(config), DiffIDs: diffIDs, Save: saveTar(ref, config, layers), present: true}
}

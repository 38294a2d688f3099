package containerdimage

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"

	"github.com/distribution/reference"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// Media types of what an import writes into the content store.
const (
	MediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	MediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Labels containerd's garbage collector and unpacker read.
const (
	labelGCExpire      = "containerd.io/gc.expire"
	labelGCRefContent  = "containerd.io/gc.ref.content."
	labelGCRefSnapshot = "containerd.io/gc.ref.snapshot."
	labelUncompressed  = "containerd.io/uncompressed"
	labelJob           = "org.layercast.job"
	leasePrefix        = "layercast-"
	extractPrefix      = "layercast-extract-"
	ingestPrefix       = "layercast-ingest-"
)

// Image is an image to put into containerd from layer files.
type Image struct {
	// Name is the image's full name in containerd (see ImageName).
	Name string
	// ID is the digest of Config.
	ID     string
	Config []byte
	// Layers in image order; Digest and MediaType say what the files are.
	Layers []jobspec.Layer
	// Job names the lease, the ingests and the snapshots of the import.
	Job string
}

// ImageName returns the name containerd and the kubelet use for image: fully
// qualified, with ":latest" added when it has no tag, so that a pod's
// "lab/app:v1" finds "docker.io/lab/app:v1". A digest-only reference keeps
// its digest.
func ImageName(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", image, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// LeaseID is the lease that holds what job's import wrote until its image
// holds it. A lease left by a killed node can be removed by this name
// (ctr -n NS leases rm); containerd drops it by itself after 24h.
func LeaseID(job string) string { return leasePrefix + safe(job) }

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func safe(s string) string { return unsafeChars.ReplaceAllString(s, "_") }

// layerMediaType maps the job's media type of a layer file to the OCI one.
func layerMediaType(t string) (string, error) {
	switch t {
	case "", "tar":
		return MediaTypeLayer, nil
	case "tar+gzip":
		return MediaTypeLayerGz, nil
	}
	return "", fmt.Errorf("layer media type %q: want tar or tar+gzip", t)
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

// manifest is an OCI image manifest.
type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

// check verifies img against itself: the config is the ID's, its diff IDs
// are the layers', the chain IDs follow from them, and every layer has a
// known media type.
func (img Image) check() error {
	if got := dockerimage.Digest(img.Config); got != img.ID {
		return fmt.Errorf("image config hashes to %s, not to the image ID %s", got, img.ID)
	}
	diffIDs, err := dockerimage.DiffIDs(img.Config)
	if err != nil {
		return err
	}
	var layerDiffs, layerChains []string
	for _, l := range img.Layers {
		if _, err := layerMediaType(l.MediaType); err != nil {
			return err
		}
		layerDiffs = append(layerDiffs, l.DiffID)
		layerChains = append(layerChains, l.ChainID)
	}
	if len(diffIDs) == 0 {
		return fmt.Errorf("image config has no layers")
	}
	if !slices.Equal(diffIDs, layerDiffs) {
		return fmt.Errorf("layers' diff IDs %v differ from the config's %v", layerDiffs, diffIDs)
	}
	if chains := jobspec.ChainIDs(diffIDs); !slices.Equal(chains, layerChains) {
		return fmt.Errorf("layers' chain IDs %v, computed %v", layerChains, chains)
	}
	if _, err := ImageName(img.Name); err != nil {
		return err
	}
	return nil
}

// manifest returns the image's OCI manifest, its descriptor, and the GC
// labels that make the manifest hold its config and layers.
func (img Image) manifest() ([]byte, descriptor, map[string]string, error) {
	m := manifest{
		SchemaVersion: 2,
		MediaType:     MediaTypeManifest,
		Config:        descriptor{MediaType: MediaTypeConfig, Digest: img.ID, Size: int64(len(img.Config))},
	}
	labels := map[string]string{labelGCRefContent + "config": img.ID}
	for i, l := range img.Layers {
		mt, err := layerMediaType(l.MediaType)
		if err != nil {
			return nil, descriptor{}, nil, err
		}
		m.Layers = append(m.Layers, descriptor{MediaType: mt, Digest: l.Digest, Size: l.Size})
		labels[fmt.Sprintf("%sl.%d", labelGCRefContent, i)] = l.Digest
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, descriptor{}, nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, descriptor{MediaType: MediaTypeManifest, Digest: dockerimage.Digest(b), Size: int64(len(b))}, labels, nil
}

package dockerimage

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/layercast/layercast/internal/ctxio"
)

// Archive describes one docker-save archive to stream into the daemon.
type Archive struct {
	// Config is the raw image config; its digest is the image ID.
	Config []byte
	// RepoTags the daemon tags the image with; empty loads it untagged.
	RepoTags []string
	// Layers in image order. A layer without a File is left out of the
	// archive: the daemon must already have it (by chain ID).
	Layers []ArchiveLayer
}

// ArchiveLayer is one entry of the manifest's layer list.
type ArchiveLayer struct {
	// Name is the file name inside the archive, unique per content.
	Name string
	// File is the verified layer file on disk (tar or gzipped tar, which
	// the daemon tells apart by content whatever Name says; zstd fails
	// the load on Docker 20.10); empty when the daemon already has the
	// layer.
	File string
}

// LayerName is the archive name used for a layer file with this digest.
func LayerName(digest string) string {
	return strings.TrimPrefix(digest, "sha256:") + ".layer"
}

// manifestEntry is one element of a docker-save manifest.json.
type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes a in docker-save format to w: manifest.json, the
// config, and the layer files that are present, read straight from disk.
// It stops with ctx's error when ctx is cancelled.
func WriteArchive(ctx context.Context, w io.Writer, a Archive) error {
	tw := tar.NewWriter(w)
	configName := strings.TrimPrefix(Digest(a.Config), "sha256:") + ".json"
	m := []manifestEntry{{Config: configName, RepoTags: a.RepoTags}}
	for _, l := range a.Layers {
		m[0].Layers = append(m[0].Layers, l.Name)
	}
	if m[0].RepoTags == nil {
		m[0].RepoTags = []string{}
	}
	manifest, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := writeBytes(tw, "manifest.json", manifest); err != nil {
		return err
	}
	if err := writeBytes(tw, configName, a.Config); err != nil {
		return err
	}
	written := map[string]bool{}
	for _, l := range a.Layers {
		if l.File == "" || written[l.Name] {
			continue
		}
		written[l.Name] = true
		if err := writeFile(ctx, tw, l.Name, l.File); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	return nil
}

func header(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o644,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
}

func writeBytes(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(header(name, int64(len(b)))); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	return nil
}

func writeFile(ctx context.Context, tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("archive layer: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive layer: %w", err)
	}
	if err := tw.WriteHeader(header(name, st.Size())); err != nil {
		return fmt.Errorf("archive layer %s: %w", name, err)
	}
	n, err := io.CopyBuffer(tw, ctxio.Reader(ctx, f), make([]byte, 1<<20))
	if err != nil {
		return fmt.Errorf("archive layer %s: %w", name, err)
	}
	if n != st.Size() {
		return fmt.Errorf("archive layer %s: read %d of %d bytes", name, n, st.Size())
	}
	return nil
}

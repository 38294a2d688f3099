// Package imagecache is the bastion's content-addressed store of images for
// jobs, and the image model both sources fill: a Release (one Image per
// platform) whose layers name the files that travel (digest, size, media
// type) and what the daemons dedup by (diff ID, chain ID). The daemon source
// lives here: Prepare finds the image in the local Docker daemon (pulling it
// when missing) and exports it once; a registry source (package
// registrysource) writes into the same store through OpenPartial,
// StoreBlob and VerifyLayer.
//
// Layout under the cache directory:
//
//	blobs/sha256/<hex>      complete, verified blobs named by their sha256: layer
//	                        files (uncompressed from a daemon, compressed as a
//	                        registry holds them), image configs, manifests
//	partial/<hex>           a blob being downloaded; a later fetch continues it
//	layers/<hex>.json       a layer blob checked once: its diff ID and unpacked size
//	images/<id-hex>.json    one daemon-exported Image per image ID
//	compressed/<hex>.json   a daemon layer's tar gzipped once (Compress): the
//	                        gzip blob's digest and size
//	tmp/                    files being written; removed on error
package imagecache

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Docker is the part of the Docker API the cache needs.
type Docker interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (image.InspectResponse, error)
	ImagePull(ctx context.Context, ref string, opts image.PullOptions) (io.ReadCloser, error)
	ImageSave(ctx context.Context, ids []string, opts ...client.ImageSaveOption) (io.ReadCloser, error)
}

// ErrNoImage means the image is neither in the daemon nor pullable.
var ErrNoImage = errors.New("image not found")

// ErrNoLayers means the image has no layers to distribute.
var ErrNoLayers = errors.New("image has no layers")

// Image is an image split into files in the cache.
type Image struct {
	Ref string `json:"ref"`
	// ID is the config digest ("sha256:...").
	ID         string  `json:"id"`
	ConfigPath string  `json:"config_path"`
	Layers     []Layer `json:"layers"`
	// Platform is the config's os/architecture/variant (or the index's).
	Platform Platform `json:"platform"`
	// ManifestDigest is the registry manifest the image came from; empty
	// for a daemon's export.
	ManifestDigest string `json:"manifest_digest,omitempty"`
}

// Layer is one layer file in the cache. Digest, Size and MediaType describe
// the file that travels; DiffID and ChainID what the daemon checks and dedups
// by, the same whichever source (and compression) the file came from.
type Layer struct {
	DiffID    string `json:"diff_id"`
	ChainID   string `json:"chain_id"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"media_type"` // MediaTar or MediaTarGzip
	Path      string `json:"path"`
	// UnpackedSize is the size of the layer tar: what the daemon stores.
	// Zero until known (a registry layer before it is fetched).
	UnpackedSize int64 `json:"unpacked_size,omitempty"`
}

// UnpackedSize is the sum of the layers' tar sizes, a lower bound while
// some are unknown.
func (im *Image) UnpackedSize() int64 {
	var n int64
	for _, l := range im.Layers {
		n += max(l.UnpackedSize, l.Size)
	}
	return n
}

// Size is the sum of the layer file sizes.
func (im *Image) Size() int64 {
	var n int64
	for _, l := range im.Layers {
		n += l.Size
	}
	return n
}

// Config reads the image config.
func (im *Image) Config() ([]byte, error) {
	b, err := os.ReadFile(im.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	return b, nil
}

// Cache is a directory of exported layers.
type Cache struct {
	Dir string
}

// New returns a cache rooted at dir, creating it.
func New(dir string) (*Cache, error) {
	for _, d := range []string{"blobs/sha256", "images", "tmp", "partial", "layers", "compressed"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create image cache: %w", err)
		}
	}
	return &Cache{Dir: dir}, nil
}

// DefaultDir is $XDG_CACHE_HOME/layercast (or ~/.cache/layercast).
func DefaultDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir: %w", err)
	}
	return filepath.Join(d, "layercast"), nil
}

// Prepare returns ref split into cached files. It pulls ref into the daemon
// when the daemon lacks it, and exports it only when the cache lacks it.
// status receives short human-readable lines about slow work.
func (c *Cache) Prepare(ctx context.Context, d Docker, ref string, status func(string)) (*Image, error) {
	if status == nil {
		status = func(string) {}
	}
	insp, err := d.ImageInspect(ctx, ref)
	if errdefs.IsNotFound(err) {
		status("pulling " + ref + " into the bastion's daemon")
		if perr := pull(ctx, d, ref); perr != nil {
			return nil, fmt.Errorf("%w: %s is not in the bastion's Docker daemon and pulling it failed: %w", ErrNoImage, ref, perr)
		}
		insp, err = d.ImageInspect(ctx, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if len(insp.RootFS.Layers) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoLayers, ref)
	}
	if im, err := c.lookup(insp.ID); err == nil {
		im.Ref = ref
		return im, fillDaemonImage(im)
	}
	status("exporting " + ref + " from the bastion's daemon")
	im, err := c.export(ctx, d, insp.ID, insp.RootFS.Layers)
	if err != nil {
		return nil, fmt.Errorf("export image %s: %w", ref, err)
	}
	im.Ref = ref
	return im, fillDaemonImage(im)
}

// fillDaemonImage sets what records written before the registry source
// lack: the platform, from the config, and the unpacked size of
// uncompressed layers.
func fillDaemonImage(im *Image) error {
	if im.Platform == (Platform{}) {
		b, err := im.Config()
		if err != nil {
			return err
		}
		if im.Platform, err = ConfigPlatform(b); err != nil {
			return err
		}
	}
	for i, l := range im.Layers {
		if l.MediaType == MediaTar {
			im.Layers[i].UnpackedSize = l.Size
		}
	}
	return nil
}

// ConfigPlatform reads os, architecture and variant from an image config.
func ConfigPlatform(config []byte) (Platform, error) {
	var p Platform
	if err := json.Unmarshal(config, &p); err != nil {
		return Platform{}, fmt.Errorf("parse image config: %w", err)
	}
	return p, nil
}

func pull(ctx context.Context, d Docker, ref string) error {
	rc, err := d.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return err
	}
	defer rc.Close()
	dec := json.NewDecoder(rc)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read pull progress: %w", err)
		}
		if msg.Error != "" {
			return errors.New(msg.Error)
		}
	}
}

func (c *Cache) indexPath(id string) string {
	return filepath.Join(c.Dir, "images", strings.TrimPrefix(id, "sha256:")+".json")
}

func (c *Cache) blobPath(digest string) string {
	return filepath.Join(c.Dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// lookup returns the cached image with this ID when every file is present
// with its recorded size.
func (c *Cache) lookup(id string) (*Image, error) {
	b, err := os.ReadFile(c.indexPath(id))
	if err != nil {
		return nil, err
	}
	var im Image
	if err := json.Unmarshal(b, &im); err != nil {
		return nil, fmt.Errorf("read cache index %s: %w", c.indexPath(id), err)
	}
	if _, err := os.Stat(im.ConfigPath); err != nil {
		return nil, err
	}
	for _, l := range im.Layers {
		st, err := os.Stat(l.Path)
		if err != nil {
			return nil, err
		}
		if st.Size() != l.Size {
			return nil, fmt.Errorf("cached layer %s has %d bytes, want %d", l.Digest, st.Size(), l.Size)
		}
	}
	return &im, nil
}

// saveEntry is one file of the docker-save stream, stored as a blob.
type saveEntry struct {
	digest string
	size   int64
}

// export streams ImageSave into the blob store, file by file, hashing as it
// writes, then reads the manifest to learn which blobs are the config and
// the layers.
func (c *Cache) export(ctx context.Context, d Docker, id string, diffIDs []string) (*Image, error) {
	rc, err := d.ImageSave(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	defer rc.Close()

	files := map[string]saveEntry{}
	links := map[string]string{}
	tr := tar.NewReader(bufio.NewReaderSize(rc, 1<<20))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read export stream: %w", err)
		}
		name := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeReg:
			e, err := c.storeBlob(tr)
			if err != nil {
				return nil, fmt.Errorf("store %s: %w", name, err)
			}
			files[name] = e
		case tar.TypeSymlink:
			links[name] = path.Clean(path.Join(path.Dir(name), h.Linkname))
		}
	}
	resolve := func(name string) (saveEntry, bool) {
		name = path.Clean(name)
		for range 8 {
			if e, ok := files[name]; ok {
				return e, true
			}
			t, ok := links[name]
			if !ok {
				break
			}
			name = t
		}
		return saveEntry{}, false
	}

	me, ok := resolve("manifest.json")
	if !ok {
		return nil, errors.New("export has no manifest.json")
	}
	mb, err := os.ReadFile(c.blobPath(me.digest))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(mb, &manifest); err != nil {
		return nil, fmt.Errorf("parse manifest.json: %w", err)
	}
	if len(manifest) != 1 {
		return nil, fmt.Errorf("manifest.json lists %d images, want 1", len(manifest))
	}
	m := manifest[0]
	ce, ok := resolve(m.Config)
	if !ok {
		return nil, fmt.Errorf("export lacks config %s", m.Config)
	}
	if ce.digest != id {
		return nil, fmt.Errorf("exported config has digest %s, daemon said image ID %s", ce.digest, id)
	}
	if len(m.Layers) != len(diffIDs) {
		return nil, fmt.Errorf("export has %d layers, image config %d", len(m.Layers), len(diffIDs))
	}
	im := &Image{ID: id, ConfigPath: c.blobPath(ce.digest)}
	chain := ""
	for i, lp := range m.Layers {
		le, ok := resolve(lp)
		if !ok {
			return nil, fmt.Errorf("export lacks layer %s", lp)
		}
		l := Layer{DiffID: diffIDs[i], Digest: le.digest, Size: le.size, MediaType: "tar", Path: c.blobPath(le.digest)}
		if le.digest != l.DiffID {
			if err := checkCompressed(l.Path, l.DiffID); err != nil {
				return nil, fmt.Errorf("layer %d (%s): %w", i, lp, err)
			}
			l.MediaType = "tar+gzip"
		}
		chain = jobspec.ChainID(chain, l.DiffID)
		l.ChainID = chain
		im.Layers = append(im.Layers, l)
	}
	if err := c.writeIndex(im); err != nil {
		return nil, err
	}
	return im, nil
}

// checkCompressed verifies that the file is gzip whose content has diffID.
func checkCompressed(p, diffID string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("layer file is neither the diff ID's tar nor gzip: %w", err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		return fmt.Errorf("decompress layer: %w", err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("decompressed layer has digest %s, config says %s", got, diffID)
	}
	return nil
}

// storeBlob copies r into the blob store under its sha256.
func (c *Cache) storeBlob(r io.Reader) (saveEntry, error) {
	f, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), "blob-*")
	if err != nil {
		return saveEntry{}, err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return saveEntry{}, err
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp, c.blobPath(digest)); err != nil {
		return saveEntry{}, err
	}
	return saveEntry{digest: digest, size: n}, nil
}

func (c *Cache) writeIndex(im *Image) error {
	b, err := json.MarshalIndent(im, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cache index: %w", err)
	}
	f, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), "index-*")
	if err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write cache index: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	if err := os.Rename(f.Name(), c.indexPath(im.ID)); err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	return nil
}

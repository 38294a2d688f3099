package imagecache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"

	"github.com/layercast/layercast/internal/ctxio"
)

// Compression is how a daemon-source layer travels.
type Compression string

const (
	// CompressAuto gzips a layer and keeps the gzip file only when it is
	// at least MinSaving smaller than the tar.
	CompressAuto Compression = "auto"
	// CompressGzip gzips every layer.
	CompressGzip Compression = "gzip"
	// CompressNone sends the tar as the daemon exported it.
	CompressNone Compression = "none"
)

// MinSaving is the least part of a layer's bytes gzip must save for
// CompressAuto to keep the gzip file: below it the hosts would spend CPU
// unpacking for next to nothing.
const MinSaving = 0.05

// gzipLevel is klauspost's level 1: about 4 CPU-s per GB on this kind of
// machine, and it halves a real root filesystem (levels 6 and 9 cost 3–8×
// more for a few percent more; BenchmarkLayerCompression).
const gzipLevel = gzip.BestSpeed

// ParseCompression reads --compress.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(s); c {
	case CompressAuto, CompressGzip, CompressNone:
		return c, nil
	}
	return "", fmt.Errorf("--compress %q: use auto, gzip or none", s)
}

// compressRecord is what compressing one tar layer found, kept in
// compressed/<diff-id-hex>.json so that each layer is compressed once.
type compressRecord struct {
	// Digest and Size are the gzip file's.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// TarSize is the layer tar's size.
	TarSize int64 `json:"tar_size"`
}

func (c *Cache) compressRecordPath(diffID string) string {
	return filepath.Join(c.Dir, "compressed", strings.TrimPrefix(diffID, "sha256:")+".json")
}

// Compress returns im with its uncompressed layers replaced by gzip files
// as mode asks; layers already compressed stay as they are. Each layer is
// compressed once: the gzip file stays in the cache with the outcome, and
// later jobs reuse both (CompressAuto also remembers a layer not worth
// it). status receives short lines about slow work; parallel bounds the
// layers compressed at once.
func (c *Cache) Compress(ctx context.Context, im *Image, mode Compression, parallel int, status func(string)) (*Image, error) {
	if mode == CompressNone || mode == "" {
		return im, nil
	}
	if status == nil {
		status = func(string) {}
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "compressed"), 0o700); err != nil {
		return nil, fmt.Errorf("compress layers: %w", err)
	}
	out := *im
	out.Layers = append([]Layer(nil), im.Layers...)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	announced := false
	for i, l := range out.Layers {
		if l.MediaType != MediaTar {
			continue
		}
		rec, ok := c.compressed(l)
		if !ok {
			if !announced {
				announced = true
				status("compressing the layers of " + im.Ref + " (once; later jobs reuse them)")
			}
		}
		g.Go(func() error {
			if !ok {
				var err error
				if rec, err = c.compressLayer(gctx, l); err != nil {
					return fmt.Errorf("compress layer %s: %w", l.Digest, err)
				}
			}
			if mode == CompressAuto && float64(rec.Size) > (1-MinSaving)*float64(rec.TarSize) {
				return nil // not worth it: the tar travels
			}
			out.Layers[i] = Layer{DiffID: l.DiffID, ChainID: l.ChainID, Digest: rec.Digest, Size: rec.Size,
				MediaType: MediaTarGzip, Path: c.blobPath(rec.Digest), UnpackedSize: rec.TarSize}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return &out, nil
}

// compressed returns the record of an earlier compression of l when its
// gzip file is still in the cache.
func (c *Cache) compressed(l Layer) (compressRecord, bool) {
	var rec compressRecord
	b, err := os.ReadFile(c.compressRecordPath(l.DiffID))
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.TarSize != l.Size {
		return rec, false
	}
	return rec, c.HasBlob(rec.Digest, rec.Size)
}

// compressLayer gzips the tar of l into the blob store and records it:
// the gzip file's digest and size, and (for VerifyLayer) what it unpacks
// to.
func (c *Cache) compressLayer(ctx context.Context, l Layer) (compressRecord, error) {
	in, err := os.Open(l.Path)
	if err != nil {
		return compressRecord{}, err
	}
	defer in.Close()
	f, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), "gzip-*")
	if err != nil {
		return compressRecord{}, err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzipLevel)
	if err != nil {
		f.Close()
		return compressRecord{}, err
	}
	n, err := io.Copy(zw, ctxio.Reader(ctx, bufio.NewReaderSize(in, 1<<20)))
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return compressRecord{}, err
	}
	if n != l.Size {
		return compressRecord{}, fmt.Errorf("layer file has %d bytes, want %d", n, l.Size)
	}
	st, err := os.Stat(f.Name())
	if err != nil {
		return compressRecord{}, err
	}
	rec := compressRecord{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: st.Size(), TarSize: n}
	if err := os.Rename(f.Name(), c.blobPath(rec.Digest)); err != nil {
		return compressRecord{}, err
	}
	lr, _ := json.Marshal(layerRecord{DiffID: l.DiffID, MediaType: MediaTarGzip, UnpackedSize: n})
	if err := c.writeFileAtomic(c.layerRecordPath(rec.Digest), lr); err != nil {
		return compressRecord{}, err
	}
	b, _ := json.Marshal(rec)
	if err := c.writeFileAtomic(c.compressRecordPath(l.DiffID), b); err != nil {
		return compressRecord{}, err
	}
	return rec, nil
}

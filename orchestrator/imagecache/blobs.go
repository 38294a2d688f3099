package imagecache

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/layercast/layercast/internal/ctxio"
)

// Layer file media types, as jobspec.Layer.MediaType carries them: how the
// file that travels is compressed.
const (
	MediaTar     = "tar"
	MediaTarGzip = "tar+gzip"
)

// ErrDigestMismatch means bytes written for a blob do not hash to its digest.
var ErrDigestMismatch = errors.New("blob does not match its digest")

// ErrHaveBlob means the cache already holds the blob being opened.
var ErrHaveBlob = errors.New("blob already in the cache")

// BlobPath is where the blob with this digest lives once complete.
func (c *Cache) BlobPath(digest string) string { return c.blobPath(digest) }

// HasBlob reports whether the cache holds the complete blob of this digest
// and size. A blob only ever appears under its name after it was verified.
func (c *Cache) HasBlob(digest string, size int64) bool {
	st, err := os.Stat(c.blobPath(digest))
	return err == nil && st.Mode().IsRegular() && st.Size() == size
}

func checkSHA256(digest string) error {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 {
		return fmt.Errorf("digest %q: only sha256 digests are supported", digest)
	}
	if _, err := hex.DecodeString(hexPart); err != nil || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("digest %q is not lowercase hex", digest)
	}
	return nil
}

// Partial is a blob being written into the cache. Its bytes live under
// partial/ until Commit verifies them and renames the file into blobs/, so
// a blob's final name never holds half a file. A Partial that is closed
// without Commit keeps its bytes for the next fetch to continue from.
type Partial struct {
	c      *Cache
	digest string
	size   int64
	f      *os.File
	h      hash.Hash
	n      int64
}

// OpenPartial opens the partial file of a blob of this digest and size
// (size < 0: unknown), creating it if needed, and hashes what it already
// holds. It holds a lock on the file until Close, waiting for another
// process's lock up to ctx. It returns ErrHaveBlob when the blob is (or
// became, while waiting) complete in the cache.
func (c *Cache) OpenPartial(ctx context.Context, digest string, size int64) (*Partial, error) {
	if err := checkSHA256(digest); err != nil {
		return nil, err
	}
	path := filepath.Join(c.Dir, "partial", strings.TrimPrefix(digest, "sha256:"))
	for {
		if c.HasBlob(digest, size) || size < 0 && fileExists(c.blobPath(digest)) {
			return nil, ErrHaveBlob
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open partial blob: %w", err)
		}
		if err := lock(ctx, f); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock partial blob %s: %w", digest, err)
		}
		// Another process may have committed (renamed) or removed the
		// file while this one waited: then the lock is on a stale inode.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		p := &Partial{c: c, digest: digest, size: size, f: f, h: sha256.New()}
		if err := p.rehash(); err != nil {
			f.Close()
			return nil, err
		}
		return p, nil
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// lock takes an exclusive flock on f, polling so that ctx can end the wait.
func lock(ctx context.Context, f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("another process is fetching it: %w", context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rehash reads what the file holds into the hash; bytes past the blob's
// size are cut off.
func (p *Partial) rehash() error {
	st, err := p.f.Stat()
	if err != nil {
		return fmt.Errorf("stat partial blob: %w", err)
	}
	n := st.Size()
	if p.size >= 0 && n > p.size {
		return p.Restart()
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read partial blob: %w", err)
	}
	got, err := io.Copy(p.h, bufio.NewReaderSize(io.LimitReader(p.f, n), 1<<20))
	if err != nil {
		return fmt.Errorf("read partial blob: %w", err)
	}
	p.n = got
	return nil
}

// Offset is how many bytes of the blob the partial file holds: where a
// download continues.
func (p *Partial) Offset() int64 { return p.n }

// Write appends to the blob; it refuses to grow it past its size.
func (p *Partial) Write(b []byte) (int, error) {
	if p.size >= 0 && p.n+int64(len(b)) > p.size {
		return 0, fmt.Errorf("%w: %s is longer than its %d bytes", ErrDigestMismatch, p.digest, p.size)
	}
	n, err := p.f.Write(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	return n, err
}

// Restart empties the partial file: the download starts from byte 0.
func (p *Partial) Restart() error {
	if err := p.f.Truncate(0); err != nil {
		return fmt.Errorf("restart partial blob: %w", err)
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restart partial blob: %w", err)
	}
	p.h.Reset()
	p.n = 0
	return nil
}

// Commit checks the size and digest and moves the file to its final name.
// On a mismatch it empties the partial file and returns ErrDigestMismatch.
func (p *Partial) Commit() error {
	got := "sha256:" + hex.EncodeToString(p.h.Sum(nil))
	if (p.size >= 0 && p.n != p.size) || got != p.digest {
		err := fmt.Errorf("%w: got %d bytes hashing to %s, want %d bytes of %s", ErrDigestMismatch, p.n, got, p.size, p.digest)
		return errors.Join(err, p.Restart())
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("commit blob %s: %w", p.digest, err)
	}
	if err := os.Rename(p.f.Name(), p.c.blobPath(p.digest)); err != nil {
		return fmt.Errorf("commit blob %s: %w", p.digest, err)
	}
	return nil
}

// Close releases the partial file (and its lock), keeping its bytes.
func (p *Partial) Close() error { return p.f.Close() }

// layerRecord is what checking a layer blob once found, kept in layers/.
type layerRecord struct {
	DiffID       string `json:"diff_id"`
	MediaType    string `json:"media_type"`
	UnpackedSize int64  `json:"unpacked_size"`
}

func (c *Cache) layerRecordPath(digest string) string {
	return filepath.Join(c.Dir, "layers", strings.TrimPrefix(digest, "sha256:")+".json")
}

// VerifyLayer checks that the cached blob of digest, of the given media
// type, unpacks to the tar with diffID, and returns the tar's size: what
// the daemon will check and store. The outcome is recorded, so each blob
// is read once however many images and jobs use it.
func (c *Cache) VerifyLayer(ctx context.Context, digest, mediaType, diffID string) (int64, error) {
	var rec layerRecord
	if b, err := os.ReadFile(c.layerRecordPath(digest)); err == nil && json.Unmarshal(b, &rec) == nil && rec.MediaType == mediaType {
		if rec.DiffID != diffID {
			return 0, fmt.Errorf("layer %s unpacks to %s, the image config says %s", digest, rec.DiffID, diffID)
		}
		return rec.UnpackedSize, nil
	}
	f, err := os.Open(c.blobPath(digest))
	if err != nil {
		return 0, fmt.Errorf("verify layer: %w", err)
	}
	defer f.Close()
	var r io.Reader = ctxio.Reader(ctx, bufio.NewReaderSize(f, 1<<20))
	switch mediaType {
	case MediaTar:
	case MediaTarGzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return 0, fmt.Errorf("verify layer %s: not gzip: %w", digest, err)
		}
		defer zr.Close()
		r = zr
	default:
		return 0, fmt.Errorf("%w: layer media type %q", ErrUnsupported, mediaType)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return 0, fmt.Errorf("verify layer %s: unpack: %w", digest, err)
	}
	rec = layerRecord{DiffID: "sha256:" + hex.EncodeToString(h.Sum(nil)), MediaType: mediaType, UnpackedSize: n}
	if rec.DiffID != diffID {
		return 0, fmt.Errorf("layer %s unpacks to %s, the image config says %s", digest, rec.DiffID, diffID)
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	if err := c.writeFileAtomic(c.layerRecordPath(digest), b); err != nil {
		return 0, fmt.Errorf("record verified layer: %w", err)
	}
	return n, nil
}

// writeFileAtomic writes b to path through a temp file and a rename.
func (c *Cache) writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Join(c.Dir, "tmp"), "rec-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// StoreBlob writes b into the cache as the blob of digest, verified:
// manifests and configs, which are small.
func (c *Cache) StoreBlob(digest string, b []byte) error {
	if err := checkSHA256(digest); err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return fmt.Errorf("%w: got %s, want %s", ErrDigestMismatch, got, digest)
	}
	if c.HasBlob(digest, int64(len(b))) {
		return nil
	}
	if err := c.writeFileAtomic(c.blobPath(digest), b); err != nil {
		return fmt.Errorf("store blob %s: %w", digest, err)
	}
	return nil
}

// ReadBlob returns a small cached blob, or an error wrapping fs.ErrNotExist.
func (c *Cache) ReadBlob(digest string) ([]byte, error) {
	if err := checkSHA256(digest); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(c.blobPath(digest))
	if err != nil {
		return nil, err
	}
	return b, nil
}

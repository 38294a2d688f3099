package containerdimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// chunk is the size of one write message (containerd's client uses 1 MiB
// too; the daemon accepts up to 16 MiB).
const chunk = 1 << 20

// contentInfo returns the content store's info on digest, or found=false.
func (c *Client) contentInfo(ctx context.Context, digest string) (contentInfo, bool, error) {
	info, err := c.apiContentInfo(ctx, digest)
	switch {
	case isNotFound(err):
		return contentInfo{}, false, nil
	case err != nil:
		return contentInfo{}, false, fmt.Errorf("content info %s: %w", digest, err)
	}
	return info, true, nil
}

// writeBlob writes r (d.Size bytes, digest d.Digest) into the content
// store under ingest ref, with labels. It returns nil when the store
// already has the blob. The content store checks size and digest on
// commit: a file that is not what the job says fails here.
func (c *Client) writeBlob(ctx context.Context, ref string, d descriptor, r io.Reader, labels map[string]string) error {
	w := c.apiContentWrite(ctx)
	defer w.close()
	resp, err := w.roundTrip(writeRequest{Action: writeStat, Ref: ref, Total: d.Size, Expected: d.Digest})
	switch {
	case isAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("write %s: %w", d.Digest, err)
	case resp.Offset != 0:
		// A stale ingest under this ref: the rollback of its job removes it.
		return fmt.Errorf("write %s: ingest %s is at offset %d, want a new one", d.Digest, ref, resp.Offset)
	}
	buf := make([]byte, chunk)
	var off int64
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			resp, err := w.roundTrip(writeRequest{Action: writeWrite, Offset: off, Data: buf[:n]})
			if err != nil {
				return fmt.Errorf("write %s at offset %d: %w", d.Digest, off, err)
			}
			if resp.Offset != off+int64(n) {
				return fmt.Errorf("write %s: containerd is at offset %d, want %d", d.Digest, resp.Offset, off+int64(n))
			}
			off += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("write %s: read: %w", d.Digest, rerr)
		}
	}
	if off != d.Size {
		return fmt.Errorf("write %s: file has %d bytes, want %d", d.Digest, off, d.Size)
	}
	resp, err = w.roundTrip(writeRequest{Action: writeCommit, Total: d.Size, Offset: off, Expected: d.Digest, Labels: labels})
	switch {
	case isAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("commit %s: %w", d.Digest, err)
	case resp.Digest != d.Digest:
		return fmt.Errorf("commit %s: containerd stored %s", d.Digest, resp.Digest)
	}
	return nil
}

// writeFile writes the file at path as d.
func (c *Client) writeFile(ctx context.Context, ref string, d descriptor, path string, labels map[string]string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", d.Digest, err)
	}
	defer f.Close()
	return c.writeBlob(ctx, ref, d, f, labels)
}

// writeBytes writes b as d.
func (c *Client) writeBytes(ctx context.Context, ref string, d descriptor, b []byte, labels map[string]string) error {
	return c.writeBlob(ctx, ref, d, bytes.NewReader(b), labels)
}

// setLabels sets labels on content digest, leaving its other labels alone.
// An empty value removes the label.
func (c *Client) setLabels(ctx context.Context, digest string, labels map[string]string) error {
	set := map[string]string{}
	var paths []string
	for k, v := range labels {
		if v != "" {
			set[k] = v
		}
		paths = append(paths, "labels."+k)
	}
	if err := c.apiContentUpdate(ctx, digest, set, paths); err != nil {
		return fmt.Errorf("label %s: %w", digest, err)
	}
	return nil
}

// readBlob reads content digest, at most max bytes.
func (c *Client) readBlob(ctx context.Context, digest string, max int64) ([]byte, error) {
	r := c.apiContentRead(ctx, digest)
	defer r.close()
	var b []byte
	for {
		data, err := r.next()
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", digest, callErr(ctx, err))
		}
		if int64(len(b)+len(data)) > max {
			return nil, fmt.Errorf("read %s: larger than %d bytes", digest, max)
		}
		b = append(b, data...)
	}
}

// abort drops ingest ref; one that is not there is not an error.
func (c *Client) abort(ctx context.Context, ref string) error {
	if err := c.apiContentAbort(ctx, ref); err != nil && !isNotFound(err) {
		return fmt.Errorf("abort ingest %s: %w", ref, err)
	}
	return nil
}

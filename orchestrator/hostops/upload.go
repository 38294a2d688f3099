package fleet

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"strings"
)

// WorkDirPrefix starts the name of every job's temp dir on a host; the job
// ID follows. Stale cleanup looks for it.
const WorkDirPrefix = "/tmp/layercast-"

var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidJobID reports whether id can name a work dir: letters, digits, '_',
// '.', '-', at most 64, not starting with a punctuation mark.
func ValidJobID(id string) bool { return jobIDRE.MatchString(id) }

// WorkDir is the temp dir of job id on a host.
func WorkDir(jobID string) string { return WorkDirPrefix + jobID }

// MakeWorkDir creates the job's temp dir, mode 0700, owned by the login
// user. It fails if the dir exists: a job dir is always fresh.
func (c *Client) MakeWorkDir(ctx context.Context, jobID string) (string, error) {
	if !ValidJobID(jobID) {
		return "", fmt.Errorf("make work dir: job id %q has characters a path cannot hold", jobID)
	}
	dir := c.workPrefix + jobID
	if _, err := c.Run(ctx, Command{Path: "mkdir", Args: []string{"-m", "0700", "--", dir}}); err != nil {
		return "", fmt.Errorf("make work dir %s: %w", dir, err)
	}
	return dir, nil
}

// RemoveWorkDir deletes a job's temp dir and everything in it (through sudo
// when the host has become, since the node may have written as root),
// after stopping a node still running from it: a node that hangs must not
// outlive its job.
func (c *Client) RemoveWorkDir(ctx context.Context, dir string) error {
	if !strings.HasPrefix(dir, c.workPrefix) || !ValidJobID(strings.TrimPrefix(dir, c.workPrefix)) {
		return fmt.Errorf("remove work dir: %q is not a layercast work dir", dir)
	}
	sudo := ""
	if c.host.Become {
		sudo = "sudo -n"
	}
	if _, err := c.Run(ctx, shell(removeScript, false, dir, sudo)); err != nil {
		return fmt.Errorf("remove work dir %s: %w", dir, err)
	}
	return nil
}

// Binary is a node binary ready to upload.
type Binary struct {
	// Name is the file name in the work dir, e.g. "layercast-node".
	Name string
	// Gzip is the gzip-compressed binary: what travels.
	Gzip []byte
	// SHA256 is the hex sha256 of the uncompressed binary: what the host
	// checks after unpacking.
	SHA256 string
}

func (b Binary) validate() error {
	if b.Name == "" || strings.ContainsAny(b.Name, "/\x00") || strings.HasPrefix(b.Name, ".") {
		return fmt.Errorf("binary name %q", b.Name)
	}
	if raw, err := hex.DecodeString(b.SHA256); err != nil || len(raw) != 32 {
		return fmt.Errorf("binary sha256 %q is not 64 hex digits", b.SHA256)
	}
	if len(b.Gzip) == 0 {
		return errors.New("binary is empty")
	}
	return nil
}

// unpackScript runs in the work dir ($1): unpack the .gz, check the sha256
// ($2), make it executable and rename it to its final name ($3). Partial
// files are removed on every path.
const unpackScript = `
set -eu
cd "$1"
gz=".$3.gz.partial"; tmp=".$3.tmp"
trap 'rm -f -- "$gz" "$tmp"' EXIT
gzip -dc -- "$gz" > "$tmp"
sum=$(sha256sum -- "$tmp" | cut -d' ' -f1)
if [ "$sum" != "$2" ]; then echo "sha256 on the host is $sum" >&2; exit 3; fi
chmod 0755 -- "$tmp"
mv -f -- "$tmp" "$3"
`

// exitChecksum is unpackScript's exit status for a checksum mismatch.
const exitChecksum = 3

// Upload sends bin into dir (made by MakeWorkDir): it writes the
// compressed bytes over SFTP, then on the host unpacks them, checks the
// sha256, makes the file executable and renames it into place, so that
// the final name only ever holds a verified binary. It holds one of the
// dialer's upload slots while it runs. It returns the binary's path.
func (c *Client) Upload(ctx context.Context, dir string, bin Binary) (string, error) {
	if err := bin.validate(); err != nil {
		return "", fmt.Errorf("upload node binary: %w", err)
	}
	if c.uploads != nil {
		if err := c.uploads.Acquire(ctx, 1); err != nil {
			return "", fmt.Errorf("upload node binary: wait for an upload slot: %w", err)
		}
		defer c.uploads.Release(1)
	}
	if err := c.send(ctx, path.Join(dir, "."+bin.Name+".gz.partial"), bin.Gzip); err != nil {
		return "", fmt.Errorf("upload node binary: %w", err)
	}
	_, err := c.Run(ctx, shell(unpackScript, false, dir, strings.ToLower(bin.SHA256), bin.Name))
	if err != nil {
		var ee *ExitError
		if errors.As(err, &ee) && ee.Code == exitChecksum {
			return "", fmt.Errorf("upload node binary: %w: want %s, %s", ErrChecksumMismatch, bin.SHA256, ee.Stderr)
		}
		return "", fmt.Errorf("upload node binary: unpack on host: %w", err)
	}
	return path.Join(dir, bin.Name), nil
}

// send writes data to a new file at p over SFTP; on failure the file is
// removed.
func (c *Client) send(ctx context.Context, p string, data []byte) (err error) {
	sc, err := c.sftpClient()
	if err != nil {
		return err
	}
	f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	defer func() {
		if err != nil {
			_ = sc.Remove(p)
		}
	}()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, werr := f.ReadFrom(&ctxReader{ctx: ctx, r: bytes.NewReader(data), n: len(data)})
	stop()
	cerr := f.Close()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", p, werr)
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", p, cerr)
	}
	return nil
}

// ctxReader ends a copy when ctx ends. Len lets the SFTP client see the
// size and keep many writes in flight; without it every 32 KiB write waits
// for its answer.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	n    int
	read int
}

func (r *ctxReader) Len() int { return r.n - r.read }

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.read += n
	return n, err
}

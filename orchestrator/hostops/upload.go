package hostops

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/layercast/layercast/orchestrator/openssh"
)

var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// ValidJobID reports whether id can name a work dir: letters, digits, '_',
// '.', '-', at most 64, not starting with a punctuation mark.
func ValidJobID(id string) bool { return jobIDRE.MatchString(id) }

// MakeWorkDir creates the job's temp dir, mode 0700, owned by the login
// user. It fails if the dir exists: a job dir is always fresh.
func (c *Conn) MakeWorkDir(ctx context.Context, jobID string) (string, error) {
	if !ValidJobID(jobID) {
		return "", fmt.Errorf("make work dir: job id %q has characters a path cannot hold", jobID)
	}
	dir := c.workPrefix + jobID
	if _, err := c.Run(ctx, openssh.Command{Path: "mkdir", Args: []string{"-m", "0700", "--", dir}}); err != nil {
		return "", fmt.Errorf("make work dir %s: %w", dir, err)
	}
	return dir, nil
}

// RemoveWorkDir deletes a job's temp dir and everything in it (through sudo
// when the host has become, since the node may have written as root),
// after stopping a node still running from it: a node that hangs must not
// outlive its job.
func (c *Conn) RemoveWorkDir(ctx context.Context, dir string) error {
	if !strings.HasPrefix(dir, c.workPrefix) || !ValidJobID(strings.TrimPrefix(dir, c.workPrefix)) {
		return fmt.Errorf("remove work dir: %q is not a layercast work dir", dir)
	}
	sudo := ""
	if c.Host().Become {
		sudo = "sudo -n"
	}
	if _, err := c.Run(ctx, openssh.Script(removeScript, dir, sudo)); err != nil {
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
// the final name only ever holds a verified binary. It returns the
// binary's path.
func (c *Conn) Upload(ctx context.Context, dir string, bin Binary) (string, error) {
	if err := bin.validate(); err != nil {
		return "", fmt.Errorf("upload node binary: %w", err)
	}
	if err := c.WriteFile(ctx, path.Join(dir, "."+bin.Name+".gz.partial"), bin.Gzip); err != nil {
		return "", fmt.Errorf("upload node binary: %w", err)
	}
	_, err := c.Run(ctx, openssh.Script(unpackScript, dir, strings.ToLower(bin.SHA256), bin.Name))
	if err != nil {
		var ee *openssh.ExitError
		if errors.As(err, &ee) && ee.Code == exitChecksum {
			return "", fmt.Errorf("upload node binary: %w: want %s, %s", ErrChecksumMismatch, bin.SHA256, ee.Stderr)
		}
		return "", fmt.Errorf("upload node binary: unpack on host: %w", err)
	}
	return path.Join(dir, bin.Name), nil
}

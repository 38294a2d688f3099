package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/nodeassets"
)

// ErrSeedMismatch means the node binary the bench would seed is not the one
// the layercast binary under test uploads: a job would not find it in the
// cache. Build both with `make build`.
var ErrSeedMismatch = errors.New("seeded node binary differs from layercast's")

// ErrSeedMissed reports a run with a seeded node cache in which some host
// did not report the node binary from its cache.
var ErrSeedMissed = errors.New("hosts did not take the seeded node binary from their cache")

// benchCacheHome is the cache home (hostops.Facts.CacheHome) of the
// account the bench's jobs log in as: the lab's inventory logs in to every
// host as root (testbed.Lab.InventoryPath), whose sshd session has no
// XDG_CACHE_HOME.
const benchCacheHome = "/root/.cache"

// seedScript leaves the node cache of $1 as a layercast job leaves it after
// bringing the node binary with sha256 $2 (hostops.Conn.MakeWorkDir, Upload): the
// cache dir emptied and made again 0700, the binary at $3 with mode 0755,
// its compressed twin (read from stdin) at $3.gz with mode 0644, every file
// owned by the login user, the binary checked against its sha256 and its
// stamp written (jobspec.CacheStampFormat), as after a job's install.
const seedScript = `
set -eu
cache=$1; sha=$2; dest=$3; tmp="$3.gz.partial-bench"
rm -rf -- "$cache"
umask 077
mkdir -p -- "$cache"
trap 'rm -f -- "$tmp" "$tmp.bin"' EXIT
cat > "$tmp"
gzip -dc -- "$tmp" > "$tmp.bin"
sum=$(sha256sum < "$tmp.bin" | cut -c1-64)
if [ "$sum" != "$sha" ]; then echo "sha256 on the host is $sum, want $sha" >&2; exit 3; fi
chmod 0755 -- "$tmp.bin"
chmod 0644 -- "$tmp"
mv -f -- "$tmp" "$dest.gz"
mv -f -- "$tmp.bin" "$dest"
stat -c '` + jobspec.CacheStampFormat + `' -- "$dest" > "$dest` + jobspec.CacheStampSuffix + `"
`

// nodeSeed is the node binary the bench places in hosts' node caches.
type nodeSeed struct {
	bin *nodeassets.Binary
	// dir and path are the node cache and the binary in it, as a job
	// names them (hostops.NodeCacheDir, hostops.CachedNodePath).
	dir, path string
}

// newNodeSeed takes the node binary built into this program for the lab's
// architecture (the lab runs on this machine) and checks that layercast
// carries the same one: `layercast version` prints its sha256's first 16
// hex digits.
func newNodeSeed(ctx context.Context, layercast string) (*nodeSeed, error) {
	arch := runtime.GOARCH
	bin, err := nodeassets.Embedded().GetContext(ctx, arch)
	if err != nil {
		return nil, fmt.Errorf("node binary to seed the node caches (build with make): %w", err)
	}
	out, err := exec.CommandContext(ctx, layercast, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("layercast version: %w", err)
	}
	if !carriesNode(string(out), arch, bin.SHA256) {
		return nil, fmt.Errorf("%w: this program carries linux/%s sha256 %s, `%s version` says:\n%s", ErrSeedMismatch, arch, bin.SHA256[:16], layercast, out)
	}
	dir := hostops.NodeCacheDir(benchCacheHome)
	return &nodeSeed{bin: bin, dir: dir, path: hostops.CachedNodePath(dir, bin.SHA256)}, nil
}

// carriesNode reports whether `layercast version` output lists the node
// binary for arch with a sha256 that sha starts with.
func carriesNode(version, arch, sha string) bool {
	for line := range strings.SplitSeq(version, "\n") {
		rest, ok := strings.CutPrefix(line, "node binary linux/"+arch+":")
		if !ok {
			continue
		}
		i := strings.LastIndex(rest, "sha256 ")
		if i < 0 {
			return false
		}
		prefix := strings.TrimSpace(rest[i+len("sha256 "):])
		return len(prefix) >= 8 && strings.HasPrefix(sha, prefix)
	}
	return false
}

// seedNodeCaches places the node binary in every lab host's node cache.
func (b *bencher) seedNodeCaches(ctx context.Context) error {
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range b.lab.Hosts() {
		g.Go(func() error {
			cmd, err := b.lab.Command(ctx, h, "sh", "-c", seedScript, "seed", b.seed.dir, b.seed.bin.SHA256, b.seed.path)
			if err != nil {
				return fmt.Errorf("seed the node cache of %s: %w", h, err)
			}
			var stderr bytes.Buffer
			cmd.Stdin, cmd.Stderr = bytes.NewReader(b.seed.bin.Gz), &stderr
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("seed the node cache of %s: %w: %s", h, err, strings.TrimSpace(stderr.String()))
			}
			return nil
		})
	}
	return g.Wait()
}

// checkSeeded is ErrSeedMissed when some host of r did not report the node
// binary from its cache.
func checkSeeded(r Result) error {
	if r.NodeFromCache != r.Hosts {
		return fmt.Errorf("%w: %d of %d from cache, %d from the bastion, %d from peers", ErrSeedMissed,
			r.NodeFromCache, r.Hosts, r.NodeFromBastion, r.NodeFromPeers)
	}
	return nil
}

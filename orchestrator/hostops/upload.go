package hostops

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// WorkDir is a job's fresh work dir on a host and where the job's node
// binary lives there.
type WorkDir struct {
	Path string
	Node NodePlace
}

// MakeWorkDir creates the job's work dir in base (Facts.WorkBase), named
// jobspec.WorkDirName, mode 0700, owned by the login user, and says in the
// same command where the node binary with sha256 sha lives: in cacheDir
// (the host's node cache, kept between jobs; see workDirScript for what it
// prunes) or, with cacheDir empty, in the work dir, removed with it. It
// checks whether the cache already holds that binary. It fails if the dir
// exists, since a job dir is always fresh; a failure after the dir was
// made removes it again. One command, not two: on a loaded link every
// round trip is a part of each host's setup.
func (c *Conn) MakeWorkDir(ctx context.Context, base, jobID, cacheDir, sha string) (WorkDir, error) {
	dir, err := checkWorkDir(base, jobID, sha)
	if err != nil {
		return WorkDir{}, err
	}
	out, err := c.Run(ctx, openssh.Script(workDirScript, base, dir, cacheDir, sha, fmt.Sprint(CacheKeepDays)))
	if err != nil {
		return WorkDir{}, fmt.Errorf("make work dir %s and place the node binary in %s: %w", dir, cmpOr(cacheDir, dir), err)
	}
	place, err := parsePlace(dir, bytes.TrimSpace(out))
	// The dir was made even when the answer was unexpected: the caller's
	// cleanup removes it.
	return WorkDir{Path: dir, Node: place}, err
}

// checkWorkDir checks MakeWorkDir's arguments and returns the work dir.
func checkWorkDir(base, jobID, sha string) (string, error) {
	if !jobspec.ValidJobID(jobID) {
		return "", fmt.Errorf("make work dir: job id %q has characters a path cannot hold", jobID)
	}
	if !path.IsAbs(base) || path.Clean(base) != base || base == "/" {
		return "", fmt.Errorf("make work dir: base %q is not an absolute directory", base)
	}
	if err := validSHA256(sha); err != nil {
		return "", fmt.Errorf("make work dir: node binary: %w", err)
	}
	return WorkDirPath(base, jobID), nil
}

// parsePlace reads workDirScript's answer for the work dir dir.
func parsePlace(dir string, answer []byte) (NodePlace, error) {
	verb, p, ok := strings.Cut(string(answer), " ")
	if !ok || (verb != "hit" && verb != "place") || !path.IsAbs(p) {
		return NodePlace{}, fmt.Errorf("make work dir %s: unexpected answer %q", dir, answer)
	}
	return NodePlace{Path: p, Cached: verb == "hit"}, nil
}

// StartCached is MakeWorkDir and, on a cache hit, Start in one SSH
// session: the same script makes the work dir, checks the cached binary
// and replaces itself with it, run with node's Args (and Become; node's
// Path is the cached binary's, whatever it says). It returns the work dir
// and, on a hit, the running node, its stdout after the script's answer.
// On a miss the session has ended: the caller brings the binary to
// WorkDir.Node.Path and starts it. A job from a warm cache then costs a
// host two sessions, not three; on a busy host each is a fork and a shell
// (about a tenth of the lab's CPU while 40 hosts set up).
func (c *Conn) StartCached(ctx context.Context, base, jobID, cacheDir, sha string, node openssh.Command) (WorkDir, openssh.Process, error) {
	dir, err := checkWorkDir(base, jobID, sha)
	if err != nil {
		return WorkDir{}, nil, err
	}
	become := "0"
	if node.Become {
		become = "1"
	}
	args := append([]string{base, dir, cacheDir, sha, fmt.Sprint(CacheKeepDays), become}, node.Args...)
	p, err := c.Start(ctx, openssh.Script(startCachedScript, args...))
	if err != nil {
		return WorkDir{}, nil, fmt.Errorf("make work dir %s and start the node from %s: %w", dir, cmpOr(cacheDir, dir), err)
	}
	line, err := firstLine(ctx, p)
	if err != nil {
		// The script did not answer: it failed before it made the dir, or
		// removed it again, or the host hung. Either way it is over.
		stopNow(ctx, p)
		return WorkDir{}, nil, fmt.Errorf("make work dir %s and start the node from %s: %w", dir, cmpOr(cacheDir, dir), err)
	}
	place, err := parsePlace(dir, line)
	if err != nil {
		stopNow(ctx, p)
		return WorkDir{Path: dir}, nil, err
	}
	wd := WorkDir{Path: dir, Node: place}
	if !place.Cached {
		// The script ends after the answer.
		if err := p.Wait(); err != nil {
			return wd, nil, fmt.Errorf("make work dir %s: %w", dir, err)
		}
		return wd, nil, nil
	}
	return wd, p, nil
}

// firstLine reads p's first line of stdout, byte by byte so that what
// follows stays for the next reader; it fails with what p wrote to stderr
// when p ends before the line does, and with ctx's error when ctx ends
// first.
func firstLine(ctx context.Context, p openssh.Process) ([]byte, error) {
	type answer struct {
		line []byte
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		var line []byte
		b := make([]byte, 1)
		for len(line) < maxAnswer {
			if _, err := io.ReadFull(p.Stdout(), b); err != nil {
				stderr, _ := io.ReadAll(io.LimitReader(p.Stderr(), maxAnswer))
				werr := p.Wait()
				if msg := strings.TrimSpace(string(stderr)); msg != "" {
					err = errors.New(msg)
				} else if werr != nil {
					err = werr
				}
				got <- answer{err: err}
				return
			}
			if b[0] == '\n' {
				break
			}
			line = append(line, b[0])
		}
		got <- answer{line: line}
	}()
	select {
	case a := <-got:
		return a.line, a.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// stopNow ends p at once (Stop with a context that has ended), as the
// caller will not read from it.
func stopNow(ctx context.Context, p openssh.Process) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cancel()
	_ = p.Stop(sctx)
}

// maxAnswer bounds a script's answer line and the stderr kept from it.
const maxAnswer = 4096

// WorkDirPath is job jobID's work dir in the work-dir base base.
func WorkDirPath(base, jobID string) string { return path.Join(base, jobspec.WorkDirName(jobID)) }

// IsWorkDir reports whether dir can be a job's work dir: an absolute,
// clean path below a directory, named jobspec.WorkDirName of a valid job
// ID. Nothing else is ever removed as one.
func IsWorkDir(dir string) bool {
	job, ok := strings.CutPrefix(path.Base(dir), jobspec.WorkDirNamePrefix)
	return ok && jobspec.ValidJobID(job) && path.IsAbs(dir) && path.Clean(dir) == dir && strings.Count(dir, "/") >= 2
}

// RemoveWorkDir deletes a job's temp dir and everything in it (through sudo
// when the host has become, since the node may have written as root),
// after stopping a node still running from it: a node that hangs must not
// outlive its job.
func (c *Conn) RemoveWorkDir(ctx context.Context, dir string) error {
	if !IsWorkDir(dir) {
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

// StopNode stops the node still running from the work dir dir, if any,
// and leaves the dir: a node of this job that an earlier SSH connection
// started, before the job clears what it left (its temporary images wait
// for the dir's jobspec.LoadingFile, so the dir goes last). It says
// whether a node was stopped.
func (c *Conn) StopNode(ctx context.Context, dir string) (bool, error) {
	if !IsWorkDir(dir) {
		return false, fmt.Errorf("stop node: %q is not a layercast work dir", dir)
	}
	out, err := c.Run(ctx, openssh.Script(stopScript, dir, c.become()))
	if err != nil {
		return false, fmt.Errorf("stop the node of %s: %w", dir, err)
	}
	switch r := strings.TrimSpace(string(out)); {
	case strings.HasPrefix(r, "killed "):
		return true, nil
	case r == "none":
		return false, nil
	case strings.HasPrefix(r, "alive "):
		return false, fmt.Errorf("stop the node of %s: pid %s ignored SIGKILL", dir, strings.TrimPrefix(r, "alive "))
	default:
		return false, fmt.Errorf("stop the node of %s: unexpected answer %q", dir, r)
	}
}

// NodeBinaryName is the node binary's file name in a work dir; in a node
// cache it is followed by "-" and its sha256.
const NodeBinaryName = "layercast-node"

// NodeCacheDir is the node cache in a login user's cache home
// (Facts.CacheHome): where jobs keep node binaries for the next job.
func NodeCacheDir(cacheHome string) string { return path.Join(cacheHome, nodeCacheName) }

// nodeCacheName is the node cache's directory name in a cache home.
const nodeCacheName = "layercast"

// CachedNodePath is the node binary with sha256 sha in the node cache
// cacheDir (see workDirScript); its compressed twin is the same path with
// ".gz" appended, and a job finds the binary there only with both present.
func CachedNodePath(cacheDir, sha string) string {
	return path.Join(cacheDir, NodeBinaryName+"-"+sha)
}

// CacheKeepDays is how long a node cache keeps a binary no job used; the
// binary a job asks for is never pruned.
const CacheKeepDays = 14

// Binary is a node binary ready to upload.
type Binary struct {
	// Gzip is the gzip-compressed binary: what travels.
	Gzip []byte
	// SHA256 is the hex sha256 of the uncompressed binary: what the host
	// checks after unpacking.
	SHA256 string
}

func validSHA256(s string) error {
	if raw, err := hex.DecodeString(s); err != nil || len(raw) != 32 || strings.ToLower(s) != s {
		return fmt.Errorf("binary sha256 %q is not 64 lower-case hex digits", s)
	}
	return nil
}

// NodePlace is where a job's node binary lives on a host.
type NodePlace struct {
	// Path is the binary; its compressed twin is Path + ".gz", which the
	// node hands on to other hosts.
	Path string
	// Cached: Path already holds the binary (checked against its sha256
	// just now); nothing needs to travel.
	Cached bool
}

// sha256Func defines the shell function sha256_of FILE, which sets _sum
// to the sha256 of FILE in lowercase hex (empty when it cannot be read)
// with the host's own tools: openssl's when it runs and answers 64 hex
// digits, else coreutils' sha256sum. openssl uses the CPU's SHA
// extensions: it hashes the 21 MB node binary in 20 ms of CPU where
// sha256sum takes 150. On a real fleet that is 0.13 s of each host's own
// time; on the lab, where 40 hosts share two cores, it was 2.5 s of every
// host's setup (a cache hit checks the binary each job). It sets a
// variable rather than printing, so that a caller takes the answer
// without a subshell, and starts only the one program.
const sha256Func = `sha256_of() {
  _sum=$(openssl dgst -sha256 -r -- "$1" 2>/dev/null) || _sum=
  _sum=${_sum%% *}
  case $_sum in
  *[!0-9a-f]*|'') ;;
  *) [ ${#_sum} -eq 64 ] && return 0 ;;
  esac
  _sum=$(sha256sum -- "$1" 2>/dev/null) || _sum=
  _sum=${_sum%% *}
}
`

// cacheCheckFunc is sha256Func and the node cache's check on top of it
// (see jobspec.CacheStampFormat for the stamp):
//
//   - stamp_of FILE sets _st to FILE's stamp (empty when stat fails or
//     prints nothing);
//   - write_stamp FILE records FILE's stamp beside it; it never fails;
//   - node_ok FILE SHA [ro] succeeds when FILE and FILE.gz are there and
//     FILE's stamp still matches it, or else FILE hashes to SHA, after
//     which the stamp is written unless the third argument is "ro".
//
// A matching stamp costs one stat where the hash cost openssl and 20 ms of
// CPU (37 on the lab while 40 hosts set up); a stamp that is missing,
// unreadable or stale (the file was written, renamed or touched since, or
// this stat cannot print nanoseconds) only means the hash runs. What the
// stamp does not stop, the hash did not either: the login user could
// rewrite binary and stamp together, but the cache dir is theirs alone
// (0700), and with become they already run sudo -n and set the session's
// PATH and shell startup files, so that user is inside the trust boundary
// whichever check runs.
const cacheCheckFunc = sha256Func + `stamp_of() {
  _st=$(stat -c '` + jobspec.CacheStampFormat + `' -- "$1" 2>/dev/null) || _st=
}
write_stamp() {
  stamp_of "$1"
  [ -n "$_st" ] || return 0
  _tmp="$1` + jobspec.CacheStampSuffix + `.partial-$$"
  { printf '%s\n' "$_st" > "$_tmp" && mv -f -- "$_tmp" "$1` + jobspec.CacheStampSuffix + `"; } 2>/dev/null || rm -f -- "$_tmp"
}
node_ok() {
  [ -f "$1" ] && [ -f "$1.gz" ] || return 1
  if [ -f "$1` + jobspec.CacheStampSuffix + `" ] && read -r _want 2>/dev/null < "$1` + jobspec.CacheStampSuffix + `"; then
    stamp_of "$1"
    [ -n "$_st" ] && [ "$_st" = "$_want" ] && return 0
  fi
  sha256_of "$1" && [ "$_sum" = "$2" ] || return 1
  [ "${3-}" = ro ] || write_stamp "$1"
}
`

// workDirScript makes the base $1 if missing (the login user's cache dir
// may not exist yet) and the fresh work dir $2 in it, mode 0700. Then it
// picks where the node binary with sha256 $4 lives: in the node cache dir
// $3 (made 0700 when missing; binaries no job used for $5 days and
// transfers broken off an hour ago are pruned, never the one asked for),
// or, when $3 is empty, in the work dir. It prints "hit PATH" when the
// cache holds the binary with the right sha256, else "place PATH". When it
// fails after making the work dir, it removes the dir (still empty).
//
// On a cache hit it starts two programs, mkdir for the work dir and stat
// for the check (openssl too when the stamp does not match): find runs only
// when the cache holds other files than the binary asked for, and the node
// itself marks the binary used (jobspec.Spec.MarkUsed) instead of a touch
// here. As with probeScript, every process counts on a busy host
// (TestWorkDir_CacheHitStartsTwoPrograms).
const workDirScript = cacheCheckFunc + `
set -eu
base=$1; work=$2; cache=$3; sha=$4; keep=$5
[ -d "$base" ] || mkdir -p -- "$base"
mkdir -m 0700 -- "$work"
trap 'rmdir -- "$work" 2>/dev/null' EXIT
verb=place; f="$work/` + NodeBinaryName + `"
if [ -n "$cache" ]; then
  umask 077
  [ -d "$cache" ] || mkdir -p -- "$cache"
  f="$cache/` + NodeBinaryName + `-$sha"
  other=""
  for x in "$cache"/*; do
    case $x in "$f"|"$f.gz"|"$f` + jobspec.CacheStampSuffix + `") ;; *) [ -e "$x" ] && other=1 ;; esac
  done
  if [ -n "$other" ]; then
    find "$cache" -maxdepth 1 -type f \( -name '` + NodeBinaryName + `-*' ! -name "` + NodeBinaryName + `-$sha*" -mtime +"$keep" -o -name '*.partial-*' -mmin +60 \) -exec rm -f -- {} + 2>/dev/null || true
  fi
  if node_ok "$f" "$sha"; then
    verb=hit
  fi
fi
trap - EXIT
echo "$verb $f"
`

// startCachedScript is workDirScript, then, on a cache hit, the node: it
// replaces the shell with the cached binary (through sudo -n when $6 is
// 1), its arguments $7 and on. On a miss it ends after the answer.
const startCachedScript = workDirScript + `[ "$verb" = hit ] || exit 0
become=$6; shift 6
if [ "$become" = 1 ]; then exec sudo -n -- "$f" "$@"; fi
exec "$f" "$@"
`

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// installScript puts a node binary in place at $1: it fetches the
// compressed binary from the URL $4 into the partial file $3 (with curl or
// wget; $4 empty: the file was uploaded there already), unpacks it, checks
// its sha256 ($2), makes it executable and renames it and its compressed
// twin ($1.gz) into place, so that $1 only ever holds a verified binary.
// Partial files are removed on every path. Last, in a node cache (dest
// named as CachedNodePath names it), it writes the binary's stamp, which
// spares the next job the hash. Exit 3: checksum mismatch; 4:
// the fetch failed; 5: no curl or wget; 6: not a gzip file.
const installScript = cacheCheckFunc + `
set -eu
dest=$1; sha=$2; gz=$3; url=$4; tmp="$gz.bin"
trap 'rm -f -- "$gz" "$tmp"' EXIT
if [ -n "$url" ]; then
  if command -v curl >/dev/null 2>&1; then curl -fsS --connect-timeout 5 --max-time 300 -o "$gz" -- "$url" || exit 4
  elif command -v wget >/dev/null 2>&1; then wget -q -T 30 -O "$gz" -- "$url" || exit 4
  else echo "neither curl nor wget is installed" >&2; exit 5; fi
fi
gzip -dc -- "$gz" > "$tmp" || exit 6
sha256_of "$tmp" || true
if [ "$_sum" != "$sha" ]; then echo "sha256 on the host is $_sum" >&2; exit 3; fi
chmod 0755 -- "$tmp"
mv -f -- "$gz" "$dest.gz"
mv -f -- "$tmp" "$dest"
case $dest in */` + NodeBinaryName + `-"$sha") write_stamp "$dest" ;; esac
`

// Exit statuses of installScript.
const (
	exitChecksum = 3
	exitFetch    = 4
	exitNoTool   = 5
	exitNotGzip  = 6
)

// partialName is the file a transfer to dest writes before it is checked:
// unique per transfer, so that two jobs filling one cache do not meet.
func partialName(dest string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return dest + ".gz.partial-" + hex.EncodeToString(b)
}

// Upload sends bin over SFTP and puts it in place at dest (a WorkDir.Node
// path): the compressed bytes travel, the host unpacks them, checks the
// sha256 and renames the binary into place.
func (c *Conn) Upload(ctx context.Context, dest string, bin Binary) error {
	if err := validSHA256(bin.SHA256); err != nil {
		return fmt.Errorf("upload node binary: %w", err)
	}
	if len(bin.Gzip) == 0 {
		return errors.New("upload node binary: binary is empty")
	}
	gz := partialName(dest)
	if err := c.WriteFile(ctx, gz, bin.Gzip); err != nil {
		return fmt.Errorf("upload node binary: %w", err)
	}
	if err := c.install(ctx, dest, bin.SHA256, gz, ""); err != nil {
		return fmt.Errorf("upload node binary: %w", err)
	}
	return nil
}

// Fetch has the host fetch the compressed node binary from url (another
// host's node, see nodebin/handoff) and put it in place at dest as Upload
// does; the sha256 check makes the source's word unnecessary. Errors wrap
// ErrFetch (the source failed: try another), ErrNoFetchTool or
// ErrChecksumMismatch.
func (c *Conn) Fetch(ctx context.Context, dest, sha, url string) error {
	if err := validSHA256(sha); err != nil {
		return fmt.Errorf("fetch node binary: %w", err)
	}
	if !strings.HasPrefix(url, "http://") {
		return fmt.Errorf("fetch node binary: %q is not an http URL", url)
	}
	if err := c.install(ctx, dest, sha, partialName(dest), url); err != nil {
		return fmt.Errorf("fetch node binary from %s: %w", url, err)
	}
	return nil
}

func (c *Conn) install(ctx context.Context, dest, sha, gz, url string) error {
	_, err := c.Run(ctx, openssh.Script(installScript, dest, sha, gz, url))
	var ee *openssh.ExitError
	if err == nil || !errors.As(err, &ee) {
		return err
	}
	switch ee.Code {
	case exitChecksum:
		return fmt.Errorf("%w: want %s, %s", ErrChecksumMismatch, sha, ee.Stderr)
	case exitFetch, exitNotGzip:
		return fmt.Errorf("%w: %s", ErrFetch, cmpOr(ee.Stderr, "not a gzip file"))
	case exitNoTool:
		return fmt.Errorf("%w: %s", ErrNoFetchTool, ee.Stderr)
	}
	return fmt.Errorf("unpack on host: %w", err)
}

// nodeCachedScript prints yes when the node cache $1 holds the node binary
// with sha256 $2, else no. Read-only.
const nodeCachedScript = cacheCheckFunc + `f="$1/` + NodeBinaryName + `-$2"
if node_ok "$f" "$2" ro; then echo yes; else echo no; fi`

// NodeCached reports whether the node cache cacheDir holds the node binary
// with sha256 sha. It writes nothing: plan shows it.
func (c *Conn) NodeCached(ctx context.Context, cacheDir, sha string) (bool, error) {
	if err := validSHA256(sha); err != nil {
		return false, fmt.Errorf("look for the node binary: %w", err)
	}
	out, err := c.Run(ctx, openssh.Script(nodeCachedScript, cacheDir, sha))
	if err != nil {
		return false, fmt.Errorf("look for the node binary in %s: %w", cacheDir, err)
	}
	return strings.TrimSpace(string(out)) == "yes", nil
}

// removeCacheScript removes the node binaries from the node cache $1 (and
// the dir itself once empty) and prints each file removed. Files of other
// programs there are left alone.
const removeCacheScript = `[ -d "$1" ] || exit 0
for f in "$1"/` + NodeBinaryName + `-*; do
  [ -f "$f" ] || continue
  rm -f -- "$f" && echo "$f"
done
rmdir -- "$1" 2>/dev/null || true`

// RemoveNodeCache deletes the node binaries layercast keeps in cacheDir
// and returns the files removed. A job running from one of them goes on:
// the file is gone, the running binary stays until it exits.
func (c *Conn) RemoveNodeCache(ctx context.Context, cacheDir string) ([]string, error) {
	if !path.IsAbs(cacheDir) || path.Base(cacheDir) != nodeCacheName {
		return nil, fmt.Errorf("remove node cache: %q is not a layercast cache dir", cacheDir)
	}
	out, err := c.Run(ctx, openssh.Script(removeCacheScript, cacheDir))
	if err != nil {
		return nil, fmt.Errorf("remove node cache %s: %w", cacheDir, err)
	}
	return strings.Fields(string(out)), nil
}

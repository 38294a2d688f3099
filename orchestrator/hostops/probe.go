package hostops

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// DockerAccess says how the login user can reach the Docker daemon.
type DockerAccess string

const (
	DockerDirect DockerAccess = "direct" // as the login user
	DockerSudo   DockerAccess = "sudo"   // through sudo -n (become is set)
	DockerNone   DockerAccess = "none"   // not usable; Facts.DockerReason says why
)

// Facts is what Probe learns about a host without writing anything there.
type Facts struct {
	OS      string // "linux", or uname -s lowercased
	Arch    string // GOARCH name: "amd64", "arm64", ...; uname -m when unknown
	Machine string // uname -m as reported
	User    string // login user on the host

	// ServerIP is the host's own address on the SSH connection: how peers
	// should dial it. ClientIP is the address the host sees the bastion
	// (or the last jump host) come from.
	ServerIP string
	ClientIP string

	Docker        DockerAccess
	DockerVersion string // server version, when the docker CLI answered
	// DockerReason explains DockerNone, or notes how DockerDirect/Sudo was
	// decided when the docker CLI is missing.
	DockerReason string
	// DockerErr is set with DockerNone; it wraps ErrNoDocker or
	// ErrSudoNeedsPassword.
	DockerErr error `json:"-"`

	// WorkBase is the dir the job's work dir goes into: the inventory's
	// work_dir, else the first of /tmp, /var/tmp and CacheHome that the
	// login user can write and that is not mounted noexec. Empty when none
	// is; WorkReason then says why.
	WorkBase   string
	WorkReason string
	// WorkFree is the free space in WorkBase in bytes; -1 when unknown.
	WorkFree int64
	// WorkBases are every dir a job may have put its work dir in on this
	// host: where cleanup looks for what ended jobs left.
	WorkBases []string
	// Leftovers are the dirs named like a work dir (jobspec.WorkDirName)
	// that the login user owns in WorkBases: other jobs', running or
	// ended. Without any, there is nothing for CleanStale to look at.
	Leftovers []string
	// CacheHome is $XDG_CACHE_HOME, else ~/.cache, of the login user.
	CacheHome string
	// CacheNoExec: CacheHome is on a file system mounted noexec, so the
	// node cannot run from a node cache there.
	CacheNoExec bool
	// Fetch is the tool the host can fetch a URL with: "curl", "wget" or
	// "" for none.
	Fetch string

	// Runtime is where the job puts the image: RuntimeDocker or
	// RuntimeContainerd (the inventory's choice, else Docker when it is
	// usable and containerd when only it is). ContainerdErr says why
	// containerd cannot be used, when it was asked for.
	Runtime       string
	ContainerdErr error `json:"-"`
}

// Runtimes a host can have.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
)

// Usable says whether a job can run on the host: Linux, a known CPU and
// docker reachable. The error wraps ErrNotLinux, ErrNoDocker or
// ErrSudoNeedsPassword and says what to fix.
func (f Facts) Usable() error {
	if f.OS != "linux" {
		return fmt.Errorf("%w: the host reports %q (uname -s); layercast needs Linux", ErrNotLinux, f.OS)
	}
	switch {
	case f.Runtime == RuntimeContainerd:
		if f.ContainerdErr != nil {
			return f.ContainerdErr
		}
	case f.Docker == DockerNone:
		if f.DockerErr != nil {
			return f.DockerErr
		}
		return fmt.Errorf("%w: %s", ErrNoDocker, f.DockerReason)
	}
	if f.WorkBase == "" {
		return fmt.Errorf("%w: %s; set work_dir: in the inventory to a directory the login user can write, on a file system not mounted noexec", ErrNoWorkDir, f.WorkReason)
	}
	return nil
}

// probeScript prints key=value lines. $1 is DOCKER_HOST (may be empty), $2
// is 1 when sudo may be used, $3 is 1 to ask the docker CLI (about 0.2
// CPU-seconds per call on a small host; a job leaves that to the node,
// which asks the daemon's API anyway), $4 the inventory's work_dir (may be
// empty), $5 the mount table to read ("" for /proc/self/mounts; tests
// give another), $6 containerd's socket. It writes nothing on the host.
// sudo is only tried when become is set: a failed sudo is logged on the
// host and may alert its admins.
//
// The work dir's base is the first candidate that is (or would be made in)
// a directory the user can write, on a file system whose mount (the
// longest mount point above it in /proc/self/mounts, the last one wins
// when mounts are stacked) is not noexec: the node runs from there when
// the host keeps no node cache.
//
// Every program the script starts is a process on the host, and on a
// busy host a process start costs more than the little work each does
// here (on the lab, 40 hosts on two cores, about 10 ms of CPU each). So
// a job's probe starts three: uname once for the kernel's name and the
// machine, one awk that answers noexec for the cache dir and every
// candidate at once, and df for the base it picks. The user comes from
// $USER (id only when sshd set none), and paths are resolved with cd -P
// and string operations in the script's own shell, without subshells
// (TestProbe_StartsThreePrograms).
const probeScript = `
dh=$1; become=$2; askcli=$3; wdir=$4; mounts=${5:-/proc/self/mounts}; ctd=${6#unix://}
um=$(uname -sm 2>/dev/null); os=${um%% *}; m=${um#"$os"}; m=${m# }
echo "os=$os"; echo "machine=$m"
[ "$os" = Linux ] || exit 0
echo "conn=$SSH_CONNECTION"
u=${USER:-${LOGNAME:-}}; [ -n "$u" ] || u=$(id -un 2>/dev/null)
echo "user=$u"
cache=${XDG_CACHE_HOME:-$HOME/.cache}
echo "cache_home=$cache"
here=$PWD
# existing sets e to the nearest path at or above $1 that exists.
existing() {
  e=$1
  while [ ! -e "$e" ] && [ "$e" != / ]; do
    case $e in */*) e=${e%/*}; e=${e:-/};; *) e=.;; esac
  done
}
# phys sets p to the directory $1 with its symlinks resolved ("" when it
# cannot be entered).
phys() { p=; if cd -P -- "$1" 2>/dev/null; then p=$PWD; cd -- "$here" 2>/dev/null || cd /; fi; }
# usable sets e (as existing) and p (as phys) for a candidate whose
# existing part is a directory the user can write, and fails otherwise.
usable() { existing "$1"; p=; [ -d "$e" ] && [ -w "$e" ] && [ -x "$e" ] || return 1; phys "$e"; }
if [ -n "$wdir" ]; then C1=$wdir; C2=; C3=; else C1=/tmp; C2=/var/tmp; C3=$cache; fi
existing "$cache"; phys "$e"; P0=$p
U1=; U2=; U3=; P1=; P2=; P3=; E1=; E2=; E3=
[ -n "$C1" ] && usable "$C1" && U1=1 && P1=$p && E1=$e
[ -n "$C2" ] && usable "$C2" && U2=1 && P2=$p && E2=$e
[ -n "$C3" ] && usable "$C3" && U3=1 && P3=$p && E3=$e
flags=$(P0=$P0 P1=$P1 P2=$P2 P3=$P3 awk '
  BEGIN { for (i = 0; i < 4; i++) { p[i] = ENVIRON["P" i]; best[i] = 0; o[i] = "" } }
  { m = $2; for (i = 0; i < 4; i++) if (m == "/" || p[i] == m || index(p[i], m "/") == 1) if (length(m) >= best[i]) { best[i] = length(m); o[i] = $4 } }
  END { for (i = 0; i < 4; i++) { x = 0; k = split(o[i], a, ","); for (j = 1; j <= k; j++) if (a[j] == "noexec") x = 1; printf "%s%d", (i ? " " : ""), x } print "" }' "$mounts" 2>/dev/null)
set -f; set -- $flags; set +f
N0=$1; N1=$2; N2=$3; N3=$4
[ "$N0" = 1 ] && echo "cache_noexec=1"
nl='
'
found=""
# try: $1 candidate, $2 1 when usable, $3 1 when noexec, $4 its existing part.
try() {
  [ -n "$found" ] || [ -z "$1" ] && return
  if [ "$2" != 1 ]; then echo "workno=$1 is not a directory the user can write"; return; fi
  if [ "$3" = 1 ]; then echo "workno=$1 is on a file system mounted noexec"; return; fi
  found=$1
  echo "workbase=$1"
  out=$(df -Pk -- "$4" 2>/dev/null)
  # Split df's second line into try's arguments: $4 is then its free KiB.
  case $out in *"$nl"*) set -f; set -- ${out#*"$nl"}; set +f; echo "workfree=$4";; *) echo "workfree=";; esac
}
try "$C1" "$U1" "$N1" "$E1"; try "$C2" "$U2" "$N2" "$E2"; try "$C3" "$U3" "$N3" "$E3"
for b in "$wdir" /tmp /var/tmp "$cache"; do
  [ -n "$b" ] || continue
  for d in "$b"/` + jobspec.WorkDirNamePrefix + `*; do [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && echo "leftover=$d"; done
done
if command -v curl >/dev/null 2>&1; then echo "fetch=curl"; elif command -v wget >/dev/null 2>&1; then echo "fetch=wget"; else echo "fetch=none"; fi
if [ -n "$ctd" ]; then
  echo "ctd=$ctd"
  if [ -S "$ctd" ]; then echo "ctd_present=yes"; else echo "ctd_present=no"; fi
  if [ -r "$ctd" ] && [ -w "$ctd" ]; then echo "ctd_rw=yes"; else echo "ctd_rw=no"; fi
fi
[ -n "$dh" ] && export DOCKER_HOST="$dh"
sock=/var/run/docker.sock
case "$dh" in unix://*) sock=${dh#unix://};; "") ;; *) sock="";; esac
if [ -n "$sock" ]; then
  echo "sock=$sock"
  if [ -S "$sock" ]; then echo "sock_present=yes"; else echo "sock_present=no"; fi
  if [ -r "$sock" ] && [ -w "$sock" ]; then echo "sock_rw=yes"; else echo "sock_rw=no"; fi
fi
if [ "$askcli" != 1 ]; then
  echo "cli=skip"
elif command -v docker >/dev/null 2>&1; then
  echo "cli=yes"
  if out=$(docker version --format '{{.Server.Version}}' 2>&1); then echo "direct=ok $out"; else echo "direct=fail $(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"; fi
else
  echo "cli=no"
fi
[ "$become" = 1 ] || exit 0
if ! command -v sudo >/dev/null 2>&1; then echo "sudo=missing"; exit 0; fi
if out=$(sudo -n true 2>&1); then echo "sudo=ok"; else echo "sudo=fail $(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"; exit 0; fi
if [ -n "$ctd" ]; then if sudo -n test -S "$ctd"; then echo "sudo_ctd=yes"; else echo "sudo_ctd=no"; fi; fi
if [ "$askcli" = 1 ] && command -v docker >/dev/null 2>&1; then
  if out=$(sudo -n env ${dh:+DOCKER_HOST="$dh"} docker version --format '{{.Server.Version}}' 2>&1); then echo "sudo_docker=ok $out"; else echo "sudo_docker=fail $(printf %s "$out" | tr '\n' ' ' | cut -c1-300)"; fi
elif [ -n "$sock" ]; then
  if sudo -n test -S "$sock"; then echo "sudo_sock=yes"; else echo "sudo_sock=no"; fi
fi
`

// Probe learns OS, CPU, the SSH connection's addresses, Docker access, the
// work dir's base and its free space, the user's cache dir, the work dirs
// other jobs left, and a tool to fetch URLs with. It
// writes nothing on the host. With askDocker the docker CLI is asked for
// the daemon's version (plan shows it); without, Docker access is judged
// from the socket and sudo alone and the node checks the daemon itself. An
// error means the probe could not run; a host that cannot take a job is
// reported through Facts.Usable.
func (c *Conn) Probe(ctx context.Context, askDocker bool) (Facts, error) {
	h := c.Host()
	ask := "0"
	if askDocker {
		ask = "1"
	}
	ctd := h.ContainerdAddress
	if ctd == "" {
		ctd = jobspec.DefaultContainerdAddress
	}
	out, err := c.Run(ctx, openssh.Script(probeScript, h.DockerHost, c.become(), ask, h.WorkDir, "", ctd))
	if err != nil {
		var exit *openssh.ExitError
		if len(out) == 0 && errors.As(err, &exit) && exit.Code > 0 {
			// The script ran, and not even uname answered: most likely
			// not a POSIX shell. (A session that could not open, or a
			// connection lost, says so itself.)
			return Facts{}, fmt.Errorf("probe host: %w (%w: no POSIX shell?)", err, ErrNotLinux)
		}
		return Facts{}, fmt.Errorf("probe host: %w", err)
	}
	return parseProbe(out, h), nil
}

// parseProbe turns probeScript's output for host h into Facts.
func parseProbe(out []byte, h inventory.Host) Facts {
	kv := map[string]string{}
	var workNo, leftovers []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch k {
		case "workno":
			workNo = append(workNo, v)
		case "leftover":
			leftovers = append(leftovers, v)
		}
		kv[k] = v
	}
	f := Facts{
		OS:       strings.ToLower(kv["os"]),
		Machine:  kv["machine"],
		User:     kv["user"],
		WorkFree: -1,

		CacheHome:   kv["cache_home"],
		CacheNoExec: kv["cache_noexec"] == "1",
		WorkBase:    kv["workbase"],
		WorkReason:  strings.Join(workNo, "; "),
	}
	f.WorkBases = workBases(h.WorkDir, f.CacheHome)
	if f.WorkBase != "" && !slices.Contains(f.WorkBases, f.WorkBase) {
		f.WorkBase = "" // not one the probe was given
	}
	for _, d := range leftovers {
		if IsWorkDir(d) && slices.Contains(f.WorkBases, path.Dir(d)) && !slices.Contains(f.Leftovers, d) {
			f.Leftovers = append(f.Leftovers, d)
		}
	}
	if t := kv["fetch"]; t == "curl" || t == "wget" {
		f.Fetch = t
	}
	f.Arch = goArch(f.Machine)
	if fields := strings.Fields(kv["conn"]); len(fields) == 4 {
		f.ClientIP, f.ServerIP = fields[0], fields[2]
	}
	if kb, err := strconv.ParseInt(strings.TrimSpace(kv["workfree"]), 10, 64); err == nil {
		f.WorkFree = kb * 1024
	}
	if f.OS != "linux" {
		f.Docker = DockerNone
		f.DockerErr = fmt.Errorf("%w: uname -s says %q", ErrNotLinux, kv["os"])
		f.DockerReason = f.DockerErr.Error()
		return f
	}
	f.Docker, f.DockerVersion, f.DockerReason, f.DockerErr = dockerAccess(kv, h.Become, h.DockerHost, f.User)
	if f.DockerErr != nil {
		f.DockerReason = f.DockerErr.Error()
	}
	f.Runtime, f.ContainerdErr = chooseRuntime(kv, h, f)
	return f
}

// chooseRuntime picks where the image goes on the host: the inventory's
// runtime, else Docker when it is usable, else containerd when its socket
// is there. The error says why containerd (when chosen) cannot be used.
func chooseRuntime(kv map[string]string, h inventory.Host, f Facts) (string, error) {
	switch h.Runtime {
	case RuntimeDocker:
		return RuntimeDocker, nil
	case "":
		if f.Docker != DockerNone || kv["ctd_present"] != "yes" && kv["sudo_ctd"] != "yes" {
			return RuntimeDocker, nil
		}
	}
	sock := kv["ctd"]
	switch {
	case h.Become && kv["sudo"] == "missing":
		return RuntimeContainerd, fmt.Errorf("%w: become is set but sudo is not installed", ErrNoRuntime)
	case h.Become && kv["sudo"] != "ok":
		return RuntimeContainerd, fmt.Errorf("%w: `sudo -n true` failed: %s; allow user %s passwordless sudo (NOPASSWD)", ErrSudoNeedsPassword, strings.TrimSpace(strings.TrimPrefix(kv["sudo"], "fail")), f.User)
	case h.Become && kv["sudo_ctd"] == "yes", !h.Become && kv["ctd_rw"] == "yes":
		return RuntimeContainerd, nil
	case kv["ctd_present"] != "yes" && kv["sudo_ctd"] != "yes":
		return RuntimeContainerd, fmt.Errorf("%w: no containerd socket at %s (containerd not running, or set containerd_address)", ErrNoRuntime, sock)
	}
	return RuntimeContainerd, fmt.Errorf("%w: user %s cannot write containerd's socket %s; set become: true (containerd's socket is root's)", ErrNoRuntime, f.User, sock)
}

// workBases are the dirs a job may put its work dir in on a host: the
// inventory's work_dir, the default bases and the login user's cache dir,
// absolute ones only, each once.
func workBases(workDir, cacheHome string) []string {
	var out []string
	for _, b := range append(append([]string{workDir}, jobspec.DefaultWorkBases()...), cacheHome) {
		if path.IsAbs(b) && path.Clean(b) == b && b != "/" && !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out
}

func dockerAccess(kv map[string]string, become bool, dockerHost, user string) (DockerAccess, string, string, error) {
	status := func(key string) (ok bool, detail string) {
		v := kv[key]
		if rest, found := strings.CutPrefix(v, "ok"); found {
			return true, strings.TrimSpace(rest)
		}
		return false, strings.TrimSpace(strings.TrimPrefix(v, "fail"))
	}
	sock := kv["sock"]
	cli := kv["cli"] == "yes"
	// Without the CLI's answer, Docker access is judged from the socket;
	// a DOCKER_HOST that is no socket is left to the node to check.
	noCLI := "docker CLI not installed"
	if kv["cli"] == "skip" {
		noCLI = "docker CLI not asked"
		if sock == "" {
			access := DockerDirect
			if become {
				access = DockerSudo
			}
			if !become || kv["sudo"] == "ok" {
				return access, "", "DOCKER_HOST=" + dockerHost + " not checked here; the node checks it", nil
			}
		}
	}
	if become {
		// The node will run through sudo -n: that is what must work.
		sudoOK, sudoOut := status("sudo")
		switch {
		case kv["sudo"] == "missing":
			return DockerNone, "", "", fmt.Errorf("%w: become is set but sudo is not installed", ErrNoDocker)
		case !sudoOK:
			return DockerNone, "", "", fmt.Errorf("%w: `sudo -n true` failed: %s; allow user %s passwordless sudo (NOPASSWD), or set become: false if it can use docker itself", ErrSudoNeedsPassword, sudoOut, user)
		}
		if sdOK, sd := status("sudo_docker"); sdOK {
			return DockerSudo, sd, "", nil
		} else if kv["sudo_docker"] != "" {
			return DockerNone, "", "", fmt.Errorf("%w: `sudo docker version` failed: %s", ErrNoDocker, sd)
		}
		if kv["sudo_sock"] == "yes" {
			return DockerSudo, "", noCLI + "; " + sock + " exists (checked through sudo)", nil
		}
		if sock == "" {
			return DockerNone, "", "", fmt.Errorf("%w: docker CLI not installed and DOCKER_HOST=%s cannot be checked without it", ErrNoDocker, dockerHost)
		}
		return DockerNone, "", "", fmt.Errorf("%w: no docker socket at %s (docker not installed or not running)", ErrNoDocker, sock)
	}

	directOK, direct := status("direct")
	switch {
	case cli && directOK:
		return DockerDirect, direct, "", nil
	case !cli && kv["sock_present"] == "yes" && kv["sock_rw"] == "yes":
		return DockerDirect, "", noCLI + "; " + sock + " is a socket the user can write", nil
	}
	var why string
	fix := "add the user to group docker, or set become: true if it may run sudo without a password"
	switch {
	case cli && daemonDown(direct):
		why, fix = "`docker version` failed: "+direct, "start the Docker daemon on the host (or set docker_host to where it listens)"
	case cli:
		why = "`docker version` failed: " + direct
	case sock == "":
		why = fmt.Sprintf("docker CLI not installed and DOCKER_HOST=%s cannot be checked without it", dockerHost)
	case kv["sock_present"] != "yes":
		why, fix = "no docker socket at "+sock+" (docker not installed or not running)", "install and start Docker on the host (or set docker_host to where it listens)"
	default:
		why = fmt.Sprintf("user %s cannot write %s (not in group docker?)", user, sock)
	}
	return DockerNone, "", "", fmt.Errorf("%w: %s; %s", ErrNoDocker, why, fix)
}

// daemonDown tells a docker CLI failure because no daemon answers from
// one because the user may not reach it.
func daemonDown(out string) bool {
	return strings.Contains(out, "Is the docker daemon running") ||
		strings.Contains(out, "connect: connection refused") ||
		strings.Contains(out, "connect: no such file or directory")
}

// goArch maps uname -m to Go's architecture names.
func goArch(m string) string {
	switch m {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64", "armv8l", "aarch64_be":
		return "arm64"
	case "armv7l", "armv6l", "armv7":
		return "arm"
	case "i386", "i686":
		return "386"
	case "ppc64le":
		return "ppc64le"
	case "s390x":
		return "s390x"
	case "riscv64":
		return "riscv64"
	}
	return m
}

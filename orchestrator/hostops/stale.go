package hostops

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// StaleDir is a work dir of an earlier job that CleanStale found.
type StaleDir struct {
	Dir string
	// PID is the node's pid from its pid file; 0 when there was none.
	PID int
	// Killed: the pid still ran the node binary from Dir and was killed.
	Killed bool
	// Removed: the dir is gone. When false, Error says why.
	Removed bool
	Error   string
}

func (s StaleDir) String() string {
	var b strings.Builder
	b.WriteString(s.Dir)
	if s.Killed {
		fmt.Fprintf(&b, " (killed node pid %d)", s.PID)
	}
	if !s.Removed {
		b.WriteString(": not removed: " + s.Error)
	}
	return b.String()
}

// killNodeFunc defines kill_node DIR SUDO: if DIR/PidFile names a process
// whose executable (or, when /proc/PID/exe is unreadable, first argument)
// is in DIR, it gets SIGTERM, then SIGKILL after 2s (a stopped process gets
// the SIGKILL). It prints killed, gone (the pid runs something else or
// nothing) or none (no pid file).
const killNodeFunc = `
kill_node() {
  pid=$(head -c 32 "$1/` + jobspec.PidFile + `" 2>/dev/null | tr -cd 0-9)
  if [ -z "$pid" ]; then echo none; return; fi
  exe=$($2 readlink "/proc/$pid/exe" 2>/dev/null) || exe=""
  [ -n "$exe" ] || exe=$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | head -n 1)
  case "$exe" in
  "$1"/*)
    $2 kill -TERM "$pid" 2>/dev/null
    i=0
    while [ $i -lt 20 ] && $2 kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
    $2 kill -KILL "$pid" 2>/dev/null
    echo "killed $pid";;
  *) echo "gone $pid";;
  esac
}
`

// staleScript looks at every $3* (jobspec.WorkDirPrefix*) dir owned by the
// login user except the current job's ($1), stops a node still running from
// it (kill_node) and removes it. $2 = 1 runs kill and rm through sudo -n
// (become). Output: "removed DIR PID killed|gone|none" or
// "failed DIR PID reason".
const staleScript = killNodeFunc + `
prefix=$3; keep="$prefix$1"; s=""; [ "$2" = 1 ] && s="sudo -n"
for d in "$prefix"*; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] || continue
  [ "$d" = "$keep" ] && continue
  r=$(kill_node "$d" "$s"); state=${r%% *}; pid=${r#"$state"}; pid=${pid# }
  if out=$($s rm -rf -- "$d" 2>&1) && [ ! -e "$d" ]; then echo "removed $d ${pid:-0} $state"
  else echo "failed $d ${pid:-0} $(printf %s "$out" | tr '\n' ' ' | cut -c1-200)"; fi
done
exit 0
`

// removeScript stops a node still running from the work dir $1 (a node
// that hangs and ignored the stop) and removes the dir. $2 is the sudo
// prefix, empty without become.
const removeScript = killNodeFunc + `
kill_node "$1" "$2" >/dev/null
$2 rm -rf -- "$1"
`

// CleanStale removes what earlier jobs left on the host: the work dirs
// (jobspec.WorkDirPrefix*, owned by the login user) of jobs other than
// keepJobID, after killing a node still running from one (its pid is in its
// pid file and
// its executable is in that dir). A node whose bastion died exits by
// itself after its heartbeat timeout; this catches the rest. It reports
// every dir it found.
func (c *Conn) CleanStale(ctx context.Context, keepJobID string) ([]StaleDir, error) {
	out, err := c.Run(ctx, openssh.Script(staleScript, keepJobID, c.become(), c.workPrefix))
	if err != nil {
		return nil, fmt.Errorf("clean stale work dirs: %w", err)
	}
	return parseStale(out), nil
}

func parseStale(out []byte) []StaleDir {
	var dirs []StaleDir
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(f[2])
		d := StaleDir{Dir: f[1], PID: pid}
		switch f[0] {
		case "removed":
			d.Removed = true
			d.Killed = len(f) == 4 && f[3] == "killed"
		case "failed":
			if len(f) == 4 {
				d.Error = f[3]
			}
		default:
			continue
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// tempImagesScript removes temporary images (jobspec.TempRef) and prints
// each removed reference: with $4 = only, those of job $1 (their names
// start with $5); otherwise those of every job but $1 (names starting with
// $6 but not $5). $2 is DOCKER_HOST, $3 = 1 runs docker through sudo -n.
// Without a docker CLI, or with the daemon down, it removes nothing and
// succeeds.
const tempImagesScript = `
dh=$2; s=""; [ "$3" = 1 ] && s="sudo -n"; mode=$4; this=$5; any=$6
command -v docker >/dev/null 2>&1 || exit 0
refs=$($s env ${dh:+DOCKER_HOST="$dh"} docker image ls --format '{{.Repository}}:{{.Tag}}' ` + jobspec.TempRepo + ` 2>/dev/null) || exit 0
for r in $refs; do
  case "$r" in
  "$this"*) [ "$mode" = only ] || continue;;
  "$any"*) [ "$mode" = only ] && continue;;
  *) continue;;
  esac
  if $s env ${dh:+DOCKER_HOST="$dh"} docker image rm "$r" >/dev/null 2>&1; then echo "$r"; fi
done
exit 0
`

// RemoveTempImages removes temporary images from the host's daemon: with
// only set, those of job jobID (its node died before removing them);
// otherwise those that nodes of every other job left there. It returns the
// references removed.
func (c *Conn) RemoveTempImages(ctx context.Context, jobID string, only bool) ([]string, error) {
	mode := "others"
	if only {
		mode = "only"
	}
	out, err := c.Run(ctx, openssh.Script(tempImagesScript, jobID, c.Host().DockerHost, c.become(), mode, jobspec.TempRefPrefix(jobID), jobspec.AnyTempRefPrefix))
	if err != nil {
		return nil, fmt.Errorf("remove temporary images: %w", err)
	}
	return strings.Fields(string(out)), nil
}

package hostops

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

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
	// Live: the dir's job still runs (or still sets up); it was left alone.
	Live bool
}

func (s StaleDir) String() string {
	var b strings.Builder
	b.WriteString(s.Dir)
	if s.Killed {
		fmt.Fprintf(&b, " (killed node pid %d)", s.PID)
	}
	switch {
	case s.Live:
		b.WriteString(": its job still runs, left alone")
	case !s.Removed:
		b.WriteString(": not removed: " + s.Error)
	}
	return b.String()
}

// aliveWithin is jobspec.AliveWithin in seconds, for the scripts (a test
// keeps the two equal).
const aliveWithin = "120"

// liveFuncs defines the shell functions that tell a live job from an ended
// one. S is the sudo prefix ("" or "sudo -n"), GRACE the minutes a work
// dir without a lock file (its node not started yet) counts as a job
// still setting up.
//
// node_pid DIR prints the pid in DIR's pid file when that process is the
// node of DIR's job: its command line names the job (jobspec.NodeJobFlag).
//
// alive DIR succeeds while DIR's job may still run: its node holds the
// lock file (checked with flock(1); without it, the node's pid decides) and
// touched it within jobspec.AliveWithin, or it has no lock file yet and is
// younger than GRACE minutes. A dir of
// another user counts as alive: its lock cannot be read.
//
// kill_node DIR stops DIR's node if it still runs (SIGTERM, SIGKILL after
// 2s; a stopped process gets the SIGKILL) and prints killed PID, alive PID
// (it would not die) or none. A zombie (dead, its parent gone or not
// reaping) counts as gone: running PID reads its state.
const liveFuncs = `
node_pid() {
  pid=$(head -c 32 "$1/` + jobspec.PidFile + `" 2>/dev/null | tr -cd 0-9)
  [ -n "$pid" ] || return 1
  job=${1##*/}; job=${job#` + jobspec.WorkDirNamePrefix + `}
  args=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
  case " $args " in *" ` + jobspec.NodeJobFlag + ` $job "*) echo "$pid";; *) return 1;; esac
}
alive() {
  [ -O "$1" ] || return 0
  lock="$1/` + jobspec.LockFile + `"
  if [ -e "$lock" ]; then
    if command -v flock >/dev/null 2>&1; then
      $S flock -n -s "$lock" true 2>/dev/null && return 1
      touched=$(stat -c %Y -- "$lock" 2>/dev/null) || return 0
      [ $(( $(date +%s) - touched )) -le ` + aliveWithin + ` ]
      return
    fi
    node_pid "$1" >/dev/null
    return
  fi
  [ -z "$(find "$1" -maxdepth 0 -mmin +"$GRACE" 2>/dev/null)" ]
}
running() {
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
kill_node() {
  pid=$(node_pid "$1") || { echo none; return; }
  $S kill -TERM "$pid" 2>/dev/null
  i=0
  while [ $i -lt 20 ] && running "$pid"; do sleep 0.1; i=$((i+1)); done
  $S kill -KILL "$pid" 2>/dev/null
  i=0
  while [ $i -lt 10 ] && running "$pid"; do sleep 0.1; i=$((i+1)); done
  if running "$pid"; then echo "alive $pid"; else echo "killed $pid"; fi
}
`

// staleScript looks, in every work-dir base given ($4 on), at every
// layercast-* (jobspec.WorkDirName) dir owned by the login user except the
// current job's (named $1); of those whose job is over (alive fails) it
// stops a node still running from it (kill_node) and removes it. $2 = 1
// runs flock, kill and rm through sudo -n (become), $3 is GRACE. Output:
// "live DIR", "removed DIR PID killed|none" or "failed DIR PID reason".
const staleScript = liveFuncs + `
keep=$1; S=""; [ "$2" = 1 ] && S="sudo -n"; GRACE=$3; shift 3
for base; do
for d in "$base"/` + jobspec.WorkDirNamePrefix + `*; do
  [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] || continue
  [ "${d##*/}" = "$keep" ] && continue
  if alive "$d"; then echo "live $d"; continue; fi
  r=$(kill_node "$d"); state=${r%% *}; pid=${r#"$state"}; pid=${pid# }
  if [ "$state" = alive ]; then echo "failed $d $pid its node ignored SIGKILL"; continue; fi
  if out=$($S rm -rf -- "$d" 2>&1) && [ ! -e "$d" ]; then echo "removed $d ${pid:-0} $state"
  else echo "failed $d ${pid:-0} $(printf %s "$out" | tr '\n' ' ' | cut -c1-200)"; fi
done
done
exit 0
`

// removeScript stops a node still running from the work dir $1 (a node
// that hangs and ignored the stop) and removes the dir. $2 is the sudo
// prefix, empty without become.
const removeScript = liveFuncs + `
S=$2
kill_node "$1" >/dev/null
$S rm -rf -- "$1"
`

// stopScript stops a node still running from the work dir $1 (kill_node);
// $2 = 1 kills through sudo -n (become).
const stopScript = liveFuncs + `
S=""; [ "$2" = 1 ] && S="sudo -n"
kill_node "$1"
`

// StaleGrace is how long a work dir whose node has not started yet counts
// as a job still setting up; after it, another job takes it for one whose
// bastion died during setup. It is above the longest setup (the node
// binary over a slow link).
const StaleGrace = 15 * time.Minute

// CleanStale removes what earlier jobs that are over left on the host: the
// work dirs (jobspec.WorkDirName, owned by the login user, in any of bases:
// Facts.WorkBases) of jobs other than keepJobID whose node holds no lock
// (or that never started a node and are older than StaleGrace), after
// stopping a node still running from one. Live jobs are reported, never
// touched. A node whose bastion died exits by itself after its heartbeat
// timeout; this catches the rest.
func (c *Conn) CleanStale(ctx context.Context, keepJobID string, bases []string) ([]StaleDir, error) {
	grace := strconv.Itoa(int(StaleGrace / time.Minute))
	keep := jobspec.WorkDirName(keepJobID)
	if keepJobID == "" {
		keep = ""
	}
	args := append([]string{keep, c.become(), grace}, bases...)
	out, err := c.Run(ctx, openssh.Script(staleScript, args...))
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
		if len(f) < 2 || len(f) < 3 && f[0] != "live" {
			continue
		}
		d := StaleDir{Dir: f[1]}
		if len(f) > 2 {
			d.PID, _ = strconv.Atoi(f[2])
		}
		switch f[0] {
		case "removed":
			d.Removed = true
			d.Killed = len(f) == 4 && f[3] == "killed"
		case "failed":
			if len(f) == 4 {
				d.Error = f[3]
			}
		case "live":
			d.Live = true
		default:
			continue
		}
		dirs = append(dirs, d)
	}
	return dirs
}

// tempImagesScript removes temporary images (jobspec.TempRef) and prints
// each removed reference: with $4 = only, those of job $1 (their names
// start with $5); otherwise those of every other job that is over (names
// starting with $6 but not $5, whose work dir is alive in none of the
// work-dir bases $9 on, GRACE $7). $2 is DOCKER_HOST, $3 = 1 runs docker
// through sudo -n. With $4 = only, it first waits up to $8 seconds for the
// images of a load the job's node left marked in its work dir
// (jobspec.LoadingFile): the daemon had that load's whole archive and
// finishes it after the node died. Without a docker CLI, or with the
// daemon down, it removes nothing and succeeds.
const tempImagesScript = liveFuncs + `
jid=$1; dh=$2; S=""; [ "$3" = 1 ] && S="sudo -n"; mode=$4; this=$5; any=$6; GRACE=$7; WAIT=$8; shift 8
dk() { $S env ${dh:+DOCKER_HOST="$dh"} docker "$@"; }
live() {
  for base; do [ -d "$base/` + jobspec.WorkDirNamePrefix + `$j" ] && alive "$base/` + jobspec.WorkDirNamePrefix + `$j" && return 0; done
  return 1
}
command -v docker >/dev/null 2>&1 || exit 0
if [ "$mode" = only ]; then
  for base; do
    f="$base/` + jobspec.WorkDirNamePrefix + `$jid/` + jobspec.LoadingFile + `"
    [ -f "$f" ] || continue
    for r in $(cat "$f"); do
      n=0
      while [ "$n" -lt "$WAIT" ] && ! dk image inspect "$r" >/dev/null 2>&1; do sleep 1; n=$((n+1)); done
    done
  done
fi
refs=$(dk image ls --format '{{.Repository}}:{{.Tag}}' ` + jobspec.TempRepo + ` 2>/dev/null) || exit 0
for r in $refs; do
  case "$r" in
  "$this"*) [ "$mode" = only ] || continue;;
  "$any"*)
    [ "$mode" = only ] && continue
    j=${r#"$any"}; j=${j%-*}
    live "$@" && continue;;
  *) continue;;
  esac
  if dk image rm "$r" >/dev/null 2>&1; then echo "$r"; fi
done
exit 0
`

// RemoveTempImages removes temporary images from the host's daemon: with
// only set, those of job jobID (its node died before removing them), once
// the daemon finished a load the node left in flight, waiting up to
// jobspec.LoadGrace for it; otherwise those that nodes of other jobs that
// are over left there (a live job's, whose work dir is alive in one of
// bases, are left alone). It returns the references removed.
func (c *Conn) RemoveTempImages(ctx context.Context, jobID string, only bool, bases []string) ([]string, error) {
	mode := "others"
	if only {
		mode = "only"
	}
	grace := strconv.Itoa(int(StaleGrace / time.Minute))
	wait := strconv.Itoa(int(jobspec.LoadGrace / time.Second))
	args := append([]string{jobID, c.Host().DockerHost, c.become(), mode, jobspec.TempRefPrefix(jobID), jobspec.AnyTempRefPrefix, grace, wait}, bases...)
	out, err := c.Run(ctx, openssh.Script(tempImagesScript, args...))
	if err != nil {
		return nil, fmt.Errorf("remove temporary images: %w", err)
	}
	return strings.Fields(string(out)), nil
}

package testbed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// run runs a short command and returns its standard output. A failure
// carries the command line and its standard error.
func run(ctx context.Context, stdin io.Reader, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// runBatch feeds lines to a command that reads a batch on stdin
// (ip -batch -, tc -batch -).
func runBatch(ctx context.Context, lines []string, name string, args ...string) error {
	if len(lines) == 0 {
		return nil
	}
	_, err := run(ctx, strings.NewReader(strings.Join(lines, "\n")+"\n"), name, args...)
	return err
}

// Proc names one process of the lab. Start is the process's start time in
// clock ticks since boot (field 22 of /proc/PID/stat), so a recycled pid is
// never mistaken for the process the lab started.
type Proc struct {
	Pid   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// procStart reads the start time of pid, or an error when it does not exist.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// procState returns the one-letter state of pid ("R", "S", "Z"...).
func procState(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// Alive reports whether the process still runs: same pid, same start time,
// and not a zombie.
func (p Proc) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	start, err := procStart(p.Pid)
	if err != nil || start != p.Start {
		return false
	}
	return procState(p.Pid) != "Z"
}

// signal sends sig to the process if it is still the one recorded.
func (p Proc) signal(sig syscall.Signal) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %d: %w", p.Pid, err)
	}
	return nil
}

// stop sends SIGTERM, waits up to grace for the process to end, then sends
// SIGKILL and waits for it to be gone.
func (p Proc) stop(ctx context.Context, grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	if waitGone(ctx, []Proc{p}, grace) {
		return nil
	}
	if err := p.signal(syscall.SIGKILL); err != nil {
		return err
	}
	if !waitGone(ctx, []Proc{p}, 10*time.Second) {
		return fmt.Errorf("process %d still alive after SIGKILL", p.Pid)
	}
	return nil
}

// waitGone polls until none of procs is alive, for at most d.
func waitGone(ctx context.Context, procs []Proc, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		alive := false
		for _, p := range procs {
			if p.Alive() {
				alive = true
				break
			}
		}
		if !alive {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spawn starts a long-running process in its own session with its output
// appended to logPath. The process outlives ctx; a goroutine reaps it when
// it ends while this process still runs.
func spawn(args []string, logPath string, env []string) (Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return Proc{}, fmt.Errorf("open log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("start %s: %w", args[0], err)
	}
	pid := cmd.Process.Pid
	start, err := procStart(pid)
	go func() { _ = cmd.Wait() }()
	if err != nil {
		_ = cmd.Process.Kill()
		return Proc{}, fmt.Errorf("read start time of %s (pid %d): %w", args[0], pid, err)
	}
	return Proc{Pid: pid, Start: start}, nil
}

// nsIdentity returns the device and inode of a namespace file, which is
// what /proc/PID/ns/* of every member resolves to.
func nsIdentity(path string) (dev, ino uint64, err error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, 0, err
	}
	return uint64(st.Dev), st.Ino, nil
}

// procsInNamespaces lists every live process whose network namespace or
// mount namespace is one of the given namespace files.
func procsInNamespaces(nsFiles []string) ([]Proc, error) {
	type key struct{ dev, ino uint64 }
	want := map[key]bool{}
	for _, f := range nsFiles {
		dev, ino, err := nsIdentity(f)
		if err != nil {
			continue // already gone
		}
		want[key{dev, ino}] = true
	}
	if len(want) == 0 {
		return nil, nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		for _, kind := range []string{"net", "mnt"} {
			dev, ino, err := nsIdentity(filepath.Join("/proc", e.Name(), "ns", kind))
			if err != nil || !want[key{dev, ino}] {
				continue
			}
			start, err := procStart(pid)
			if err != nil {
				break
			}
			p := Proc{Pid: pid, Start: start}
			if p.Alive() {
				out = append(out, p)
			}
			break
		}
	}
	return out, nil
}

// killAll sends SIGKILL to every process and waits until they are gone.
func killAll(ctx context.Context, procs []Proc) error {
	for _, p := range procs {
		if err := p.signal(syscall.SIGKILL); err != nil {
			return err
		}
	}
	if !waitGone(ctx, procs, 10*time.Second) {
		return errors.New("processes still alive after SIGKILL")
	}
	return nil
}

// Package containerdtest starts a private containerd for tests: its own
// root, state dir and unix socket in a temp dir, its own mount namespace
// (every mount it makes goes away with it), stopped by pid and removed when
// the test ends. The CRI plugin is off unless StartCRI starts it, as on a
// Kubernetes node.
package containerdtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Containerd is where Debian's containerd package puts the daemon.
const Containerd = "/usr/bin/containerd"

// Daemon is a running test containerd.
type Daemon struct {
	Address string // the socket path
	Dir     string // holds root/, state/, sock, config.toml, log
	Root    string // containerd's root dir

	t      testing.TB
	cri    bool
	cmd    *exec.Cmd
	exited chan error
	logf   *os.File
}

// Start starts containerd for t, or skips t when this machine cannot run
// it (not root, no containerd, no unshare).
func Start(t testing.TB) *Daemon {
	t.Helper()
	return start(t, false)
}

// StartCRI is Start with containerd's CRI plugin on, in a network
// namespace of its own: the plugin reacts to image events in the k8s.io
// namespace (it adds a sha256:ID name for every image).
func StartCRI(t testing.TB) *Daemon {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, cri bool) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start containerd")
	}
	if _, err := os.Stat(Containerd); err != nil {
		t.Skipf("no containerd at %s", Containerd)
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("needs unshare(1) to give containerd its own mount namespace")
	}
	// A short path: the socket's must fit in sun_path.
	dir, err := os.MkdirTemp("", "lcctd")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Address: filepath.Join(dir, "sock"), Dir: dir, Root: filepath.Join(dir, "root"), t: t, cri: cri}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if cri {
		disabled = ""
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
%s
[grpc]
  address = %q
[ttrpc]
  address = %q
`, d.Root, filepath.Join(dir, "state"), disabled, d.Address, d.Address+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove containerd dir: %v", err)
		}
	})
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs containerd on d's dirs and waits until it answers.
func (d *Daemon) start() error {
	logf, err := os.OpenFile(filepath.Join(d.Dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// unshare execs containerd in place, so the pid we hold is
	// containerd's; its mount namespace takes its mounts away with it.
	args := []string{"--mount", "--propagation", "private"}
	if d.cri {
		// The CRI plugin's streaming server listens on its own loopback.
		args = append(args, "--net")
	}
	cmd := exec.Command("unshare", append(args, Containerd, "--config", filepath.Join(d.Dir, "config.toml"))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start containerd: %w", err)
	}
	d.cmd, d.logf, d.exited = cmd, logf, make(chan error, 1)
	go func(exited chan<- error) { exited <- cmd.Wait() }(d.exited)
	if err := d.wait(60 * time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(d.Dir, "log"))
		return fmt.Errorf("%w\n%s", err, tail(log, 3000))
	}
	return nil
}

func (d *Daemon) wait(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := exec.Command("ctr", "-a", d.Address, "version").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("Server:")) {
			return nil
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			return fmt.Errorf("containerd exited: %w", errors.Join(werr, err))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not answering after %s: %v: %s", limit, err, out)
		}
	}
}

// stop signals containerd by pid and waits for it (killing it after 30s).
func (d *Daemon) stop(sig syscall.Signal) {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("containerd did not stop within 30s; killed")
	}
	d.logf.Close()
	d.cmd = nil
}

// Kill kills containerd with SIGKILL, as a crash would.
func (d *Daemon) Kill() { d.stop(syscall.SIGKILL) }

// Restart starts containerd again on the same root, state and socket; it
// may be called from any goroutine.
func (d *Daemon) Restart() error { return d.start() }

// Pause stops containerd with SIGSTOP: it keeps its socket and answers
// nothing until Resume.
func (d *Daemon) Pause() { d.signal(syscall.SIGSTOP) }

// Resume continues a paused containerd.
func (d *Daemon) Resume() { d.signal(syscall.SIGCONT) }

func (d *Daemon) signal(sig syscall.Signal) {
	if d.cmd == nil {
		d.t.Fatalf("containerd is not running")
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal containerd: %v", err)
	}
}

// Ctr runs ctr against the daemon in namespace ns and returns its
// combined output, failing the test on error.
func (d *Daemon) Ctr(ns string, args ...string) string {
	d.t.Helper()
	out, err := d.TryCtr(ns, args...)
	if err != nil {
		d.t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TryCtr runs ctr against the daemon in namespace ns.
func (d *Daemon) TryCtr(ns string, args ...string) (string, error) {
	out, err := exec.Command("ctr", append([]string{"-a", d.Address, "-n", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// Lines runs ctr with -q-style output and returns its non-empty lines.
func (d *Daemon) Lines(ns string, args ...string) []string {
	d.t.Helper()
	var out []string
	for _, l := range strings.Split(d.Ctr(ns, args...), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Package dockerdtest starts a private Docker daemon for tests: its own data
// root, exec root and unix socket in a temp dir, its own network and mount
// namespaces, stopped by pid and removed when the test ends.
package dockerdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
)

// Dockerd is where the binary lives on Debian's docker.io.
const Dockerd = "/usr/sbin/dockerd"

// Daemon is a running test daemon.
type Daemon struct {
	Host string // "unix:///tmp/.../sock"
	Dir  string // holds root/, exec/, sock, pid, log
	Root string // the data root
	pid  int
}

// Start starts a daemon for t, or skips t when this machine cannot run one
// (not root, no dockerd, no unshare).
func Start(t testing.TB) *Daemon {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start dockerd")
	}
	if _, err := os.Stat(Dockerd); err != nil {
		t.Skipf("no dockerd at %s", Dockerd)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1) to give dockerd its own network namespace")
	}
	// A short path: the socket's must fit in sun_path.
	dir, err := os.MkdirTemp("", "lcdockerd")
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Host: "unix://" + filepath.Join(dir, "sock"), Dir: dir, Root: filepath.Join(dir, "root")}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	// unshare execs dockerd in place, so the pid we hold is dockerd's. Its
	// own mount namespace takes every mount it makes away with it, even
	// when it is killed.
	cmd := exec.Command(unshare, "--net", "--mount", Dockerd,
		"--data-root", d.Root,
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"),
		"-H", d.Host,
		"--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
		"--storage-driver=overlay2",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		t.Fatalf("start dockerd: %v", err)
	}
	d.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		defer logf.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("dockerd did not stop within 60s; killed")
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove dockerd dir: %v", err)
		}
	})
	if err := d.wait(exited, 90*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		t.Fatalf("%v\n%s", err, tail(log, 2000))
	}
	return d
}

func (d *Daemon) wait(exited <-chan error, limit time.Duration) error {
	c, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer c.Close()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("dockerd exited: %w", errors.Join(werr, err))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd not answering after %s: %w", limit, err)
		}
	}
}

// Client returns a client for the daemon, closed when the test ends.
func (d *Daemon) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.NewClientWithOpts(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// HasLayer returns whether the daemon's layer store holds chainID.
func (d *Daemon) HasLayer(chainID string) bool {
	_, err := os.Stat(filepath.Join(d.Root, "image", "overlay2", "layerdb", "sha256", chainID[len("sha256:"):]))
	return err == nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// StartRegistry runs Debian's docker-registry in the daemon's network
// namespace on 127.0.0.1:5000 (a registry the daemon trusts without TLS),
// stopped by pid when the test ends, and returns its address.
func (d *Daemon) StartRegistry(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("no docker-registry")
	}
	netns := fmt.Sprintf("--net=/proc/%d/ns/net", d.pid)
	if b, err := exec.Command("nsenter", netns, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("bring up lo in dockerd's namespace: %v: %s", err, b)
	}
	dir := filepath.Join(d.Dir, "registry")
	config := fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:5000\n", dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.Dir, "registry.yml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(d.Dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", netns, bin, "serve", filepath.Join(d.Dir, "registry.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	// Registered after the daemon's cleanup, so it runs before it.
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("nsenter", netns, "ss", "-ltnH", "sport = :5000").Output()
		if err == nil && len(out) > 0 {
			return "127.0.0.1:5000"
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(d.Dir, "registry.log"))
			t.Fatalf("registry not listening after 30s: %s", tail(log, 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

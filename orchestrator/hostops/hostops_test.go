package hostops

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// localHost is a transport to this machine: it runs commands with sh -c as
// sshd would and writes files directly. The SSH path itself is tested in
// package openssh.
type localHost struct{ host inventory.Host }

func (l localHost) Host() inventory.Host { return l.host }

func (l localHost) Run(ctx context.Context, cmd openssh.Command) ([]byte, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd.String())
	c.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root", "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22"}
	c.Stdin = cmd.Stdin
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, &openssh.ExitError{Cmd: cmd.Path, Code: ee.ExitCode(), Stderr: strings.TrimSpace(stderr.String())}
	}
	return out, err
}

func (l localHost) WriteFile(ctx context.Context, p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(p)
		return err
	}
	return f.Close()
}

func (l localHost) Start(context.Context, openssh.Command) (openssh.Process, error) {
	return nil, errors.New("localHost starts no process")
}

func (l localHost) Forward(context.Context, string) (openssh.Forward, error) {
	return nil, errors.New("localHost forwards no port")
}

func (l localHost) Close() error { return nil }

// connect returns a Conn to this machine whose work dirs go under a temp
// dir, never to the real /tmp/layercast-*.
func connect(t *testing.T) (*Conn, string) {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "layercast-")
	return &Conn{transport: localHost{host: inventory.Host{Name: "local"}}, workPrefix: prefix}, prefix
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestClient_UploadChecksUnpacksAndRenames(t *testing.T) {
	c, prefix := connect(t)
	ctx := context.Background()
	bin := bytes.Repeat([]byte("#!/bin/sh\necho node\n"), 50000)
	sum := sha256.Sum256(bin)
	dir, err := c.MakeWorkDir(ctx, "job1")
	if err != nil {
		t.Fatal(err)
	}
	if dir != prefix+"job1" {
		t.Errorf("work dir %s", dir)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("work dir: %v %v", st, err)
	}
	if _, err := c.MakeWorkDir(ctx, "job1"); err == nil {
		t.Errorf("a second MakeWorkDir of the same job succeeded; work dirs must be fresh")
	}
	if _, err := c.MakeWorkDir(ctx, "../etc"); err == nil {
		t.Errorf("job id with a path accepted")
	}

	p, err := c.Upload(ctx, dir, Binary{Name: "layercast-node", Gzip: gz(t, bin), SHA256: hex.EncodeToString(sum[:])})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("uploaded file differs (%v)", err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	assertOnly(t, dir, "layercast-node")

	bad := sha256.Sum256([]byte("something else"))
	_, err = c.Upload(ctx, dir, Binary{Name: "other", Gzip: gz(t, bin), SHA256: hex.EncodeToString(bad[:])})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("want ErrChecksumMismatch, got %v", err)
	}
	assertOnly(t, dir, "layercast-node")

	_, err = c.Upload(ctx, dir, Binary{Name: "broken", Gzip: []byte("not gzip"), SHA256: hex.EncodeToString(sum[:])})
	if err == nil {
		t.Fatal("corrupt gzip uploaded")
	}
	assertOnly(t, dir, "layercast-node")

	if err := c.RemoveWorkDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir still there: %v", err)
	}
	if err := c.RemoveWorkDir(ctx, "/etc"); err == nil {
		t.Errorf("RemoveWorkDir accepted a dir that is no work dir")
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", dir, got, names)
	}
}

func TestClient_ProbeReportsOSArchAndConnection(t *testing.T) {
	c, _ := connect(t)
	f, err := c.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if f.OS != "linux" || f.Arch != runtime.GOARCH {
		t.Errorf("os/arch %s/%s", f.OS, f.Arch)
	}
	if f.ServerIP != "127.0.0.1" || f.ClientIP != "127.0.0.1" {
		t.Errorf("addresses server %q client %q", f.ServerIP, f.ClientIP)
	}
	if f.TmpFree <= 0 {
		t.Errorf("tmp free %d", f.TmpFree)
	}
	if f.Docker == "" || (f.Docker == DockerNone) != (f.Usable() != nil) {
		t.Errorf("docker %q, usable %v", f.Docker, f.Usable())
	}
}

func TestParseProbe_DockerAccess(t *testing.T) {
	base := "os=Linux\nmachine=aarch64\nconn=10.0.0.1 5555 10.0.0.11 22\nuser=deploy\ntmpfree=1024\n"
	for _, c := range []struct {
		name, out string
		become    bool
		access    DockerAccess
		err       error
		reason    string
	}{
		{"direct", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=yes\ncli=yes\ndirect=ok 20.10.24\n", false, DockerDirect, nil, ""},
		{"socket only", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=yes\ncli=no\n", false, DockerDirect, nil, "CLI not installed"},
		{"no permission", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=no\ncli=yes\ndirect=fail permission denied while trying to connect\n", false, DockerNone, ErrNoDocker, "set become: true"},
		{"no docker", "sock=/var/run/docker.sock\nsock_present=no\nsock_rw=no\ncli=no\n", false, DockerNone, ErrNoDocker, "no docker socket"},
		{"daemon stopped", "sock=/var/run/docker.sock\nsock_present=no\nsock_rw=no\ncli=yes\ndirect=fail Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n", false, DockerNone, ErrNoDocker, "start the Docker daemon"},
		{"sudo works", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=no\ncli=yes\ndirect=fail denied\nsudo=ok\nsudo_docker=ok 24.0.7\n", true, DockerSudo, nil, ""},
		{"sudo wants password", "sock=/var/run/docker.sock\nsock_present=yes\ncli=yes\ndirect=ok 20.10\nsudo=fail sudo: a password is required\n", true, DockerNone, ErrSudoNeedsPassword, "a password is required"},
		{"sudo but daemon down", "cli=yes\ndirect=fail x\nsudo=ok\nsudo_docker=fail Cannot connect to the Docker daemon\n", true, DockerNone, ErrNoDocker, "Cannot connect"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := parseProbe([]byte(base+c.out), c.become, "")
			if f.Arch != "arm64" || f.ServerIP != "10.0.0.11" || f.ClientIP != "10.0.0.1" || f.TmpFree != 1024*1024 {
				t.Errorf("facts %+v", f)
			}
			if f.Docker != c.access {
				t.Errorf("access %s, want %s (%s)", f.Docker, c.access, f.DockerReason)
			}
			err := f.Usable()
			if c.err == nil && err != nil || c.err != nil && !errors.Is(err, c.err) {
				t.Errorf("Usable() = %v, want %v", err, c.err)
			}
			if !strings.Contains(f.DockerReason, c.reason) {
				t.Errorf("reason %q lacks %q", f.DockerReason, c.reason)
			}
		})
	}
	f := parseProbe([]byte("os=Darwin\nmachine=arm64\n"), false, "")
	if !errors.Is(f.Usable(), ErrNotLinux) {
		t.Errorf("darwin: %v", f.Usable())
	}
}

func TestClient_CleanStaleKillsOnlyNodesRunFromTheirDir(t *testing.T) {
	c, prefix := connect(t)
	sleepBin, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	startFrom := func(bin string) *exec.Cmd {
		cmd := exec.Command(bin, "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	mkdir := func(job string) string {
		d := prefix + job
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// old: its node still runs from its dir.
	old := mkdir("old")
	node := filepath.Join(old, "layercast-node")
	data, _ := os.ReadFile(sleepBin)
	os.WriteFile(node, data, 0o755)
	nodeCmd := startFrom(node)
	os.WriteFile(filepath.Join(old, jobspec.PidFile), []byte(fmt.Sprint(nodeCmd.Process.Pid)), 0o600)
	// reused: node.pid names a pid now used by an unrelated process.
	reused := mkdir("reused")
	other := startFrom(sleepBin)
	os.WriteFile(filepath.Join(reused, jobspec.PidFile), []byte(fmt.Sprint(other.Process.Pid)), 0o600)
	current := mkdir("current")

	nodeDone := make(chan error, 1)
	go func() { nodeDone <- nodeCmd.Wait() }()
	got, err := c.CleanStale(context.Background(), "current")
	if err != nil {
		t.Fatal(err)
	}
	byDir := map[string]StaleDir{}
	for _, s := range got {
		byDir[s.Dir] = s
	}
	if s := byDir[old]; !s.Removed || !s.Killed || s.PID != nodeCmd.Process.Pid {
		t.Errorf("old: %+v", s)
	}
	if s := byDir[reused]; !s.Removed || s.Killed {
		t.Errorf("reused: %+v", s)
	}
	if _, ok := byDir[current]; ok || len(got) != 2 {
		t.Errorf("reported %v; the current job's dir must be left alone", got)
	}
	select {
	case <-nodeDone:
	case <-time.After(5 * time.Second):
		t.Errorf("stale node still runs")
	}
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("unrelated process was killed: %v", err)
	}
	for _, d := range []string{old, reused} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed", d)
		}
	}
	if _, err := os.Stat(current); err != nil {
		t.Errorf("current job dir: %v", err)
	}
}

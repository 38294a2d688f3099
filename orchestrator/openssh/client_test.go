package fleet

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/semaphore"
)

// connect dials an in-process server whose commands run on this machine;
// work dirs go under a temp dir, never to the real /tmp/layercast-*.
func connect(t *testing.T, mod func(*Config)) (*Client, string) {
	t.Helper()
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	e.trust(t, s, hk.PublicKey())
	prefix := filepath.Join(t.TempDir(), "layercast-")
	d := e.dialer(t, func(c *Config) {
		c.workDirPrefix = prefix
		if mod != nil {
			mod(c)
		}
	})
	conn, err := d.Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn.(*Client), prefix
}

func TestClient_RunQuotesArgsAndReportsExitStatus(t *testing.T) {
	c, _ := connect(t, nil)
	ctx := context.Background()
	out, err := c.Run(ctx, Command{Path: "printf", Args: []string{"%s|", "a b", "it's", "$HOME", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "a b|it's|$HOME||" {
		t.Errorf("args arrived as %q", got)
	}
	_, err = c.Run(ctx, shell("echo oops >&2; exit 7", false))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 7 || ee.Stderr != "oops" {
		t.Errorf("want exit 7 with stderr oops, got %v", err)
	}
	out, err = c.Run(ctx, Command{Path: "cat", Stdin: strings.NewReader("from stdin")})
	if err != nil || string(out) != "from stdin" {
		t.Errorf("stdin: %q %v", out, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Run(tctx, Command{Path: "sleep", Args: []string{"30"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx end: got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Run did not return when ctx ended")
	}
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
	c, prefix := connect(t, nil)
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

func TestClient_UploadWaitsForASlot(t *testing.T) {
	slots := semaphore.NewWeighted(1)
	c, _ := connect(t, func(cfg *Config) { cfg.Uploads = slots })
	dir, err := c.MakeWorkDir(context.Background(), "job2")
	if err != nil {
		t.Fatal(err)
	}
	if !slots.TryAcquire(1) {
		t.Fatal("slot taken")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	sum := sha256.Sum256([]byte("x"))
	_, err = c.Upload(ctx, dir, Binary{Name: "n", Gzip: gz(t, []byte("x")), SHA256: hex.EncodeToString(sum[:])})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "upload slot") {
		t.Errorf("want a wait for the slot, got %v", err)
	}
	slots.Release(1)
	if _, err := c.Upload(context.Background(), dir, Binary{Name: "n", Gzip: gz(t, []byte("x")), SHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Errorf("upload with a free slot: %v", err)
	}
}

func TestClient_StartStreamsStdioAndStopEndsIt(t *testing.T) {
	c, _ := connect(t, nil)
	p, err := c.Start(context.Background(), shell(`read line; echo "got $line"; echo progress >&2; exec sleep 60`, false))
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr())
	if _, err := io.WriteString(p.Stdin(), "spec\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(p.Stdout()).ReadString('\n')
	if err != nil || line != "got spec\n" {
		t.Fatalf("stdout %q %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("stop took %v; SIGTERM should end sleep at once", time.Since(start))
	}
	var ee *ExitError
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Errorf("a process ended by SIGTERM should report it: %v", err)
	}
}

func TestClient_ForwardReachesTheBastionAddress(t *testing.T) {
	c, _ := connect(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
	f, err := c.Forward(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if f.RemotePort() <= 0 {
		t.Fatalf("remote port %d", f.RemotePort())
	}
	// The in-process "host" is this machine: its 127.0.0.1:port is ours.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.RemotePort()))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "ping\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("echo through forward: %q %v", line, err)
	}
	conn.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.RemotePort()), time.Second); err == nil {
		c2.Close()
		t.Errorf("remote port still open after Close")
	}
}

func TestClient_ProbeReportsOSArchAndConnection(t *testing.T) {
	c, _ := connect(t, nil)
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
	c, prefix := connect(t, nil)
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
	os.WriteFile(filepath.Join(old, "node.pid"), []byte(fmt.Sprint(nodeCmd.Process.Pid)), 0o600)
	// reused: node.pid names a pid now used by an unrelated process.
	reused := mkdir("reused")
	other := startFrom(sleepBin)
	os.WriteFile(filepath.Join(reused, "node.pid"), []byte(fmt.Sprint(other.Process.Pid)), 0o600)
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

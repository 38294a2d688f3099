package hostops

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
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
type localHost struct {
	host inventory.Host
	// bin, when set, comes first in PATH: fake tools for a test.
	bin string
	// sessions, when set, counts the commands run and started.
	sessions *atomic.Int32
}

func (l localHost) Host() inventory.Host { return l.host }

// command is cmd as sshd would run it for a session.
func (l localHost) command(ctx context.Context, cmd openssh.Command) *exec.Cmd {
	if l.sessions != nil {
		l.sessions.Add(1)
	}
	c := exec.CommandContext(ctx, "sh", "-c", cmd.String())
	path := "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
	if l.bin != "" {
		path = l.bin + ":" + path
	}
	c.Env = []string{"PATH=" + path, "HOME=/root", "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22"}
	return c
}

func (l localHost) Run(ctx context.Context, cmd openssh.Command) ([]byte, error) {
	c := l.command(ctx, cmd)
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

func (l localHost) Start(ctx context.Context, cmd openssh.Command) (openssh.Process, error) {
	c := l.command(context.WithoutCancel(ctx), cmd)
	p := &localProcess{c: c}
	var err error
	if p.stdin, err = c.StdinPipe(); err != nil {
		return nil, err
	}
	if p.stdout, err = c.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.stderr, err = c.StderrPipe(); err != nil {
		return nil, err
	}
	return p, c.Start()
}

// localProcess is a command localHost started, as an SSH session's.
type localProcess struct {
	c      *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
}

func (p *localProcess) Stdin() io.WriteCloser { return p.stdin }
func (p *localProcess) Stdout() io.Reader     { return p.stdout }
func (p *localProcess) Stderr() io.Reader     { return p.stderr }
func (p *localProcess) Wait() error           { return p.c.Wait() }
func (p *localProcess) Stop(context.Context) error {
	return p.c.Process.Kill()
}

func (l localHost) Forward(context.Context, string) (openssh.Forward, error) {
	return nil, errors.New("localHost forwards no port")
}

func (l localHost) Close() error { return nil }

// connect returns a Conn to this machine and a work-dir base in a temp
// dir, never the real /tmp.
func connect(t *testing.T) (*Conn, string) {
	t.Helper()
	return &Conn{transport: localHost{host: inventory.Host{Name: "local"}}}, t.TempDir()
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
	c, base := connect(t)
	ctx := context.Background()
	bin := bytes.Repeat([]byte("#!/bin/sh\necho node\n"), 50000)
	sum := sha256.Sum256(bin)
	sha := hex.EncodeToString(sum[:])
	wd, err := c.MakeWorkDir(ctx, base, "job1", "", sha)
	if err != nil {
		t.Fatal(err)
	}
	dir := wd.Path
	if dir != base+"/layercast-job1" {
		t.Errorf("work dir %s", dir)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("work dir: %v %v", st, err)
	}
	if _, err := c.MakeWorkDir(ctx, base, "job1", "", sha); err == nil {
		t.Errorf("a second MakeWorkDir of the same job succeeded; work dirs must be fresh")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("a second MakeWorkDir of the same job removed the first one's dir: %v", err)
	}
	if _, err := c.MakeWorkDir(ctx, base, "../etc", "", sha); err == nil {
		t.Errorf("job id with a path accepted")
	}
	if _, err := c.MakeWorkDir(ctx, base, "job3", "", "not-a-sha"); err == nil {
		t.Errorf("a sha256 that is not one accepted")
	}
	// A base that does not exist yet (a fresh cache dir) is made.
	if d, err := c.MakeWorkDir(ctx, base+"/home/.cache", "job2", "", sha); err != nil || d.Path != base+"/home/.cache/layercast-job2" {
		t.Errorf("work dir in a missing base: %+v, %v", d, err)
	}

	// Without a cache the binary goes into the work dir.
	place := wd.Node
	if place.Cached || place.Path != dir+"/"+NodeBinaryName {
		t.Fatalf("place without cache: %+v", place)
	}
	if err := c.Upload(ctx, place.Path, Binary{Gzip: gz(t, bin), SHA256: sha}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(place.Path)
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("uploaded file differs (%v)", err)
	}
	if st, _ := os.Stat(place.Path); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
	assertOnly(t, dir, NodeBinaryName, NodeBinaryName+".gz")

	bad := sha256.Sum256([]byte("something else"))
	err = c.Upload(ctx, dir+"/other", Binary{Gzip: gz(t, bin), SHA256: hex.EncodeToString(bad[:])})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("want ErrChecksumMismatch, got %v", err)
	}
	assertOnly(t, dir, NodeBinaryName, NodeBinaryName+".gz")

	err = c.Upload(ctx, dir+"/broken", Binary{Gzip: []byte("not gzip"), SHA256: sha})
	if err == nil {
		t.Fatal("corrupt gzip uploaded")
	}
	assertOnly(t, dir, NodeBinaryName, NodeBinaryName+".gz")

	if err := c.RemoveWorkDir(ctx, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("work dir still there: %v", err)
	}
	for _, d := range []string{"/etc", "/layercast-x", base + "/layercast-", base + "/layercast-../x", "relative/layercast-x"} {
		if err := c.RemoveWorkDir(ctx, d); err == nil {
			t.Errorf("RemoveWorkDir accepted %q, which is no work dir", d)
		}
	}
}

func TestClient_MakeWorkDirRemovesItsDirWhenTheNodeCacheCannotBeMade(t *testing.T) {
	c, base := connect(t)
	ctx := context.Background()
	// A file where the cache dir should be: mkdir -p fails after the work
	// dir was made, in the same command.
	home := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(home, []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	sha := strings.Repeat("ab", 32)
	wd, err := c.MakeWorkDir(ctx, base, "job1", NodeCacheDir(home), sha)
	if err == nil || wd.Path != "" {
		t.Fatalf("got %+v, %v; want an error and no work dir to clean up", wd, err)
	}
	if _, err := os.Stat(filepath.Join(base, "layercast-job1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed command left its work dir: %v", err)
	}
	// The job can make it again once the cache is fixed.
	if err := os.Remove(home); err != nil {
		t.Fatal(err)
	}
	if wd, err := c.MakeWorkDir(ctx, base, "job1", NodeCacheDir(home), sha); err != nil || wd.Node.Path != CachedNodePath(NodeCacheDir(home), sha) {
		t.Errorf("after the fix: %+v, %v", wd, err)
	}
}

func TestClient_NodeCacheKeepsTheVerifiedBinary(t *testing.T) {
	c, base := connect(t)
	ctx := context.Background()
	cache := NodeCacheDir(filepath.Join(t.TempDir(), "cache"))
	bin := bytes.Repeat([]byte("#!/bin/sh\necho node v2\n"), 40000)
	sum := sha256.Sum256(bin)
	sha := hex.EncodeToString(sum[:])

	// Each job has its own work dir; the node's place is the cache's.
	jobs := 0
	placeNode := func() (NodePlace, error) {
		jobs++
		wd, err := c.MakeWorkDir(ctx, base, fmt.Sprintf("job%d", jobs), cache, sha)
		return wd.Node, err
	}
	// The names the scripts use are the ones NodeCacheDir and
	// CachedNodePath give (the bench seeds caches by them).
	place, err := placeNode()
	if err != nil || place.Cached || path.Base(cache) != "layercast" || place.Path != CachedNodePath(cache, sha) {
		t.Fatalf("first place: %+v, %v", place, err)
	}
	if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache dir: %v %v", st, err)
	}
	if err := c.Upload(ctx, place.Path, Binary{Gzip: gz(t, bin), SHA256: sha}); err != nil {
		t.Fatal(err)
	}
	again, err := placeNode()
	if err != nil || !again.Cached || again.Path != place.Path {
		t.Fatalf("second place: %+v, %v; want the cached binary", again, err)
	}
	// The install stamped the binary with what stat says of it.
	stamp, err := os.ReadFile(place.Path + jobspec.CacheStampSuffix)
	if err != nil {
		t.Fatalf("no stamp after the install: %v", err)
	}
	if out, err := exec.Command("stat", "-c", jobspec.CacheStampFormat, "--", place.Path).Output(); err != nil || string(out) != string(stamp) {
		t.Fatalf("stamp %q, stat says %q (%v)", stamp, out, err)
	}
	// A cached binary that changed is not trusted, even at the same size
	// and dated back: its status-change time moved, so it is hashed.
	info, err := os.Stat(place.Path)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(bin)
	changed[len(changed)-2] = '3'
	if err := os.WriteFile(place.Path, changed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(place.Path, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if p, _ := placeNode(); p.Cached {
		t.Fatal("a binary changed in place, same size and date, counts as cached")
	}
	// Nor is one that changed without a stamp to compare.
	if err := os.WriteFile(place.Path, []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(place.Path + jobspec.CacheStampSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if p, _ := placeNode(); p.Cached {
		t.Fatal("a binary whose sha256 changed counts as cached")
	}
	// Old binaries no job asked for are pruned; the one asked for stays.
	stale := filepath.Join(cache, NodeBinaryName+"-"+strings.Repeat("ab", 32))
	if err := os.WriteFile(stale, []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-(CacheKeepDays + 2) * 24 * time.Hour)
	for _, f := range []string{stale, place.Path} {
		if err := os.Chtimes(f, long, long); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := placeNode(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unused old binary was kept: %v", err)
	}
	if _, err := os.Stat(place.Path); err != nil {
		t.Errorf("the binary asked for was pruned: %v", err)
	}
}

// sha256_of takes openssl's answer when it is a sha256 and sha256sum's
// when openssl is missing, fails or prints something else.
func TestSha256Of_PrefersOpensslAndFallsBackToSha256sum(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bin")
	data := bytes.Repeat([]byte("node"), 1000)
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	faked := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name    string
		openssl string // the fake openssl script; "" for none on PATH
		want    string
	}{
		{"openssl answers", "#!/bin/sh\necho '" + faked + " *stdin'\n", faked},
		{"no openssl", "", want},
		{"openssl fails", "#!/bin/sh\necho 'dgst: unknown option' >&2\nexit 1\n", want},
		{"openssl prints no hash", "#!/bin/sh\necho 'SHA2-256(x)= abc'\n", want},
		{"openssl prints uppercase", "#!/bin/sh\necho '" + strings.ToUpper(faked) + " *x'\n", want},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A PATH with only the tools the function may use.
			bin := t.TempDir()
			for _, tool := range []string{"sha256sum", "cut"} {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.openssl != "" {
				if err := os.WriteFile(filepath.Join(bin, "openssl"), []byte(tc.openssl), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			c := exec.Command("/bin/sh", "-c", sha256Func+`set -eu; sha256_of "$1"; echo "$_sum"`, "sh", file)
			c.Env = []string{"PATH=" + bin}
			out, err := c.Output()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Fatalf("sha256_of = %q, %v; want %s", out, err, tc.want)
			}
		})
	}
	// The machine's own openssl, when it has one, agrees with sha256sum.
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("/bin/sh", "-c", sha256Func+`sha256_of "$1"; echo "$_sum"`, "sh", file).Output()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Fatalf("with the real openssl: %q, %v; want %s", out, err, want)
		}
	}
}

func TestClient_FetchFromAnotherHost(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if _, err := exec.LookPath("wget"); err != nil {
			t.Skip("neither curl nor wget")
		}
	}
	c, _ := connect(t)
	ctx := context.Background()
	bin := bytes.Repeat([]byte("#!/bin/sh\necho fetched\n"), 30000)
	sum := sha256.Sum256(bin)
	sha := hex.EncodeToString(sum[:])
	body := gz(t, bin)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good.gz":
			w.Write(body)
		case "/garbage.gz":
			w.Write([]byte("garbage"))
		default:
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), NodeBinaryName)
	if err := c.Fetch(ctx, dest, sha, srv.URL+"/busy.gz"); !errors.Is(err, ErrFetch) {
		t.Fatalf("fetch from a busy host: %v, want ErrFetch", err)
	}
	if err := c.Fetch(ctx, dest, sha, srv.URL+"/garbage.gz"); !errors.Is(err, ErrFetch) {
		t.Fatalf("fetch of garbage: %v, want ErrFetch", err)
	}
	assertOnly(t, filepath.Dir(dest))
	if err := c.Fetch(ctx, dest, sha, srv.URL+"/good.gz"); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("fetched binary differs (%v)", err)
	}
	assertOnly(t, filepath.Dir(dest), NodeBinaryName, NodeBinaryName+".gz")
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
	f, err := c.Probe(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if f.OS != "linux" || f.Arch != runtime.GOARCH {
		t.Errorf("os/arch %s/%s", f.OS, f.Arch)
	}
	if f.ServerIP != "127.0.0.1" || f.ClientIP != "127.0.0.1" {
		t.Errorf("addresses server %q client %q", f.ServerIP, f.ClientIP)
	}
	if f.WorkBase == "" || f.WorkFree <= 0 || !slices.Contains(f.WorkBases, f.WorkBase) {
		t.Errorf("work base %q (%d bytes free) of %v", f.WorkBase, f.WorkFree, f.WorkBases)
	}
	if f.Docker == "" || (f.Docker == DockerNone) != (f.Usable() != nil) {
		t.Errorf("docker %q, usable %v", f.Docker, f.Usable())
	}
	if f.CacheHome != "/root/.cache" {
		t.Errorf("cache home %q, want $HOME/.cache", f.CacheHome)
	}
	if _, err := exec.LookPath("curl"); err == nil && f.Fetch != "curl" {
		t.Errorf("fetch tool %q, want curl", f.Fetch)
	}
	quick, err := c.Probe(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if quick.DockerVersion != "" || quick.OS != f.OS || quick.Arch != f.Arch {
		t.Errorf("probe without the docker CLI: %+v", quick)
	}
}

func TestParseProbe_DockerAccess(t *testing.T) {
	base := "os=Linux\nmachine=aarch64\nconn=10.0.0.1 5555 10.0.0.11 22\nuser=deploy\nworkbase=/tmp\nworkfree=1024\n"
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
		{"socket, CLI not asked", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=yes\ncli=skip\n", false, DockerDirect, nil, "CLI not asked"},
		{"no socket, CLI not asked", "sock=/var/run/docker.sock\nsock_present=no\nsock_rw=no\ncli=skip\n", false, DockerNone, ErrNoDocker, "no docker socket"},
		{"tcp DOCKER_HOST, CLI not asked", "cli=skip\n", false, DockerDirect, nil, "the node checks it"},
		{"sudo socket, CLI not asked", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=no\ncli=skip\nsudo=ok\nsudo_sock=yes\n", true, DockerSudo, nil, "checked through sudo"},
		{"sudo but daemon down", "cli=yes\ndirect=fail x\nsudo=ok\nsudo_docker=fail Cannot connect to the Docker daemon\n", true, DockerNone, ErrNoDocker, "Cannot connect"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := parseProbe([]byte(base+c.out), inventory.Host{Become: c.become})
			if f.Arch != "arm64" || f.ServerIP != "10.0.0.11" || f.ClientIP != "10.0.0.1" || f.WorkFree != 1024*1024 || f.WorkBase != "/tmp" {
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
	f := parseProbe([]byte("os=Darwin\nmachine=arm64\n"), inventory.Host{})
	if !errors.Is(f.Usable(), ErrNotLinux) {
		t.Errorf("darwin: %v", f.Usable())
	}
}

func TestParseProbe_Runtime(t *testing.T) {
	base := "os=Linux\nmachine=x86_64\nuser=deploy\nworkbase=/tmp\nworkfree=1024\nctd=/run/containerd/containerd.sock\n"
	noDocker := "sock=/var/run/docker.sock\nsock_present=no\nsock_rw=no\ncli=skip\n"
	for _, c := range []struct {
		name, out string
		host      inventory.Host
		runtime   string
		err       error
	}{
		{"docker when usable", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=yes\ncli=skip\nctd_present=yes\nctd_rw=yes\n", inventory.Host{}, RuntimeDocker, nil},
		{"containerd when only it is there", noDocker + "ctd_present=yes\nctd_rw=no\nsudo=ok\nsudo_ctd=yes\n", inventory.Host{Become: true}, RuntimeContainerd, nil},
		{"containerd needs root", noDocker + "ctd_present=yes\nctd_rw=no\n", inventory.Host{}, RuntimeContainerd, ErrNoRuntime},
		{"neither", noDocker + "ctd_present=no\nctd_rw=no\n", inventory.Host{}, RuntimeDocker, ErrNoDocker},
		{"asked for, missing", noDocker + "ctd_present=no\nctd_rw=no\nsudo=ok\nsudo_ctd=no\n", inventory.Host{Runtime: RuntimeContainerd, Become: true}, RuntimeContainerd, ErrNoRuntime},
		{"asked for while docker works", "sock=/var/run/docker.sock\nsock_present=yes\nsock_rw=yes\ncli=skip\nctd_present=yes\nctd_rw=yes\n", inventory.Host{Runtime: RuntimeContainerd}, RuntimeContainerd, nil},
		{"docker asked for", noDocker + "ctd_present=yes\nctd_rw=yes\n", inventory.Host{Runtime: RuntimeDocker}, RuntimeDocker, ErrNoDocker},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := parseProbe([]byte(base+c.out), c.host)
			if f.Runtime != c.runtime {
				t.Errorf("runtime %q, want %q", f.Runtime, c.runtime)
			}
			err := f.Usable()
			if c.err == nil && err != nil || c.err != nil && !errors.Is(err, c.err) {
				t.Errorf("Usable() = %v, want %v", err, c.err)
			}
		})
	}
}

func TestClient_CleanStaleTakesOnlyJobsThatAreOver(t *testing.T) {
	c, base := connect(t)
	other := t.TempDir() // a second work-dir base, /var/tmp say
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1) on this machine")
	}
	start := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		return cmd
	}
	mkdir := func(job string, lock bool) string {
		d := filepath.Join(base, jobspec.WorkDirName(job))
		if job == "abandoned" || job == "live" {
			d = filepath.Join(other, jobspec.WorkDirName(job))
		}
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if lock {
			if err := os.WriteFile(filepath.Join(d, jobspec.LockFile), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	writePid := func(dir string, pid int) {
		if err := os.WriteFile(filepath.Join(dir, jobspec.PidFile), []byte(fmt.Sprint(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// over: its node hangs (still runs, named by its command line) but
	// holds no lock: it is stopped and its dir removed.
	over := mkdir("over", true)
	hung := start("sh", "-c", "sleep 300; :", "sh", jobspec.NodeJobFlag, "over")
	writePid(over, hung.Process.Pid)
	// live: its node holds the lock: another job running side by side.
	live := mkdir("live", true)
	holder := start(flock, "-o", filepath.Join(live, jobspec.LockFile), "sleep", "300")
	writePid(live, holder.Process.Pid)
	// frozen: its node holds the lock but stopped touching it longer ago
	// than jobspec.AliveWithin (frozen, its bastion gone): it is over, its
	// node is stopped and its dir removed.
	frozen := mkdir("frozen", true)
	frozenNode := start(flock, "-o", filepath.Join(frozen, jobspec.LockFile), "sh", "-c", "sleep 300; :", "sh", jobspec.NodeJobFlag, "frozen")
	// setup: no node started yet, just made: a job still setting up.
	setup := mkdir("setup", false)
	// abandoned: no node ever started and older than StaleGrace.
	abandoned := mkdir("abandoned", false)
	old := time.Now().Add(-StaleGrace - time.Minute)
	if err := os.Chtimes(abandoned, old, old); err != nil {
		t.Fatal(err)
	}
	// reused: the lock is free and the pid file names an unrelated process.
	reused := mkdir("reused", true)
	unrelated := start("sleep", "300")
	writePid(reused, unrelated.Process.Pid)
	current := mkdir("current", false)

	// Let flock take its locks before the cleanup looks.
	deadline := time.Now().Add(5 * time.Second)
	for !lockHeld(t, flock, filepath.Join(live, jobspec.LockFile)) || !lockHeld(t, flock, filepath.Join(frozen, jobspec.LockFile)) {
		if time.Now().After(deadline) {
			t.Fatal("flock(1) never took the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The frozen node's shell is flock's child, named by its job.
	kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", frozenNode.Process.Pid, frozenNode.Process.Pid))
	var frozenPid int
	fmt.Sscan(string(kids), &frozenPid)
	writePid(frozen, frozenPid)
	stale := time.Now().Add(-jobspec.AliveWithin - 5*time.Second)
	if err := os.Chtimes(filepath.Join(frozen, jobspec.LockFile), stale, stale); err != nil {
		t.Fatal(err)
	}
	hungDone := make(chan error, 1)
	go func() { hungDone <- hung.Wait() }()
	got, err := c.CleanStale(context.Background(), "current", []string{base, other})
	if err != nil {
		t.Fatal(err)
	}
	byDir := map[string]StaleDir{}
	for _, s := range got {
		byDir[s.Dir] = s
	}
	if s := byDir[over]; !s.Removed || !s.Killed || s.PID != hung.Process.Pid {
		t.Errorf("over: %+v", s)
	}
	if s := byDir[frozen]; !s.Removed || !s.Killed || s.PID != frozenPid {
		t.Errorf("frozen: %+v (node pid %d)", s, frozenPid)
	}
	for _, d := range []string{abandoned, reused} {
		if s := byDir[d]; !s.Removed || s.Killed {
			t.Errorf("%s: %+v", d, s)
		}
	}
	for _, d := range []string{live, setup} {
		if s := byDir[d]; !s.Live || s.Removed {
			t.Errorf("%s: %+v, want it left alone as live", d, s)
		}
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if _, ok := byDir[current]; ok || len(got) != 6 {
		t.Errorf("reported %v; the current job's dir must be left alone", got)
	}
	select {
	case <-hungDone:
	case <-time.After(5 * time.Second):
		t.Errorf("the hung node of an ended job still runs")
	}
	for _, p := range []*exec.Cmd{unrelated, holder} {
		if err := p.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("pid %d was killed: %v", p.Process.Pid, err)
		}
	}
	for _, d := range []string{over, frozen, abandoned, reused} {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed", d)
		}
	}
	if _, err := os.Stat(current); err != nil {
		t.Errorf("current job dir: %v", err)
	}
}

func TestClient_StopNodeStopsTheJobsNodeAndLeavesItsDir(t *testing.T) {
	c, base := connect(t)
	dir := filepath.Join(base, jobspec.WorkDirName("lost"))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	node := exec.Command("sh", "-c", "sleep 300; :", "sh", jobspec.NodeJobFlag, "lost")
	node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(-node.Process.Pid, syscall.SIGKILL) })
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	if err := os.WriteFile(filepath.Join(dir, jobspec.PidFile), []byte(fmt.Sprint(node.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	stopped, err := c.StopNode(context.Background(), dir)
	if err != nil || !stopped {
		t.Fatalf("StopNode: stopped %v, %v; want the node stopped", stopped, err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the node still runs")
	}
	if _, err := os.Stat(filepath.Join(dir, jobspec.PidFile)); err != nil {
		t.Errorf("the dir must stay for the temporary images' wait: %v", err)
	}
	// Its pid file now names nothing of the job: nothing to stop.
	if stopped, err := c.StopNode(context.Background(), dir); err != nil || stopped {
		t.Errorf("second StopNode: stopped %v, %v; want nothing stopped", stopped, err)
	}
	if _, err := c.StopNode(context.Background(), "/tmp"); err == nil {
		t.Error("StopNode took /tmp for a work dir")
	}
}

// lockHeld reports whether somebody holds lock (flock -n fails).
func lockHeld(t *testing.T, flock, lock string) bool {
	t.Helper()
	return exec.Command(flock, "-n", "-s", lock, "true").Run() != nil
}

// probeWith runs the probe script here against a made-up mount table.
func probeWith(t *testing.T, workDir, mounts string) Facts {
	t.Helper()
	c, _ := connect(t)
	table := filepath.Join(t.TempDir(), "mounts")
	if err := os.WriteFile(table, []byte(mounts), 0o600); err != nil {
		t.Fatal(err)
	}
	h := inventory.Host{Name: "local", WorkDir: workDir}
	out, err := c.Run(context.Background(), openssh.Script(probeScript, "", "0", "0", workDir, table))
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	return parseProbe(out, h)
}

func TestProbe_ListsTheWorkDirsOtherJobsLeftInTheWorkBases(t *testing.T) {
	base := t.TempDir()
	for _, d := range []string{"layercast-20261202-ended", "layercast-20261202-live", "not-layercast-x", "layercast"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Neither a file nor a symlink is a work dir.
	if err := os.WriteFile(filepath.Join(base, "layercast-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(base, "layercast-link")); err != nil {
		t.Fatal(err)
	}
	f := probeWith(t, base, "/dev/sda1 / ext4 rw,relatime 0 0\n")
	var here []string
	for _, d := range f.Leftovers {
		if filepath.Dir(d) == base {
			here = append(here, filepath.Base(d))
		}
	}
	slices.Sort(here)
	if want := []string{"layercast-20261202-ended", "layercast-20261202-live"}; !slices.Equal(here, want) {
		t.Errorf("leftovers in the work base %q, want %q (all: %q)", here, want, f.Leftovers)
	}
	for _, d := range f.Leftovers {
		if !slices.Contains(f.WorkBases, filepath.Dir(d)) {
			t.Errorf("leftover %s outside the work bases %q", d, f.WorkBases)
		}
	}
}

func TestProbe_WorkDirBaseAllowsExec(t *testing.T) {
	if _, err := os.Stat("/var/tmp"); err != nil {
		t.Skip("no /var/tmp here")
	}
	plain := "/dev/sda1 / ext4 rw,relatime 0 0\n"
	if f := probeWith(t, "", plain); f.WorkBase != "/tmp" || f.WorkFree <= 0 {
		t.Errorf("nothing noexec: work base %q (%d free), want /tmp", f.WorkBase, f.WorkFree)
	}
	f := probeWith(t, "", plain+"tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n")
	if f.WorkBase != "/var/tmp" || !strings.Contains(f.WorkReason, "/tmp is on a file system mounted noexec") {
		t.Errorf("/tmp noexec: work base %q (%s), want /var/tmp", f.WorkBase, f.WorkReason)
	}
	if f.Usable() != nil && !errors.Is(f.Usable(), ErrNoDocker) {
		t.Errorf("a host with /var/tmp to run from: %v", f.Usable())
	}
	if !slices.Equal(f.WorkBases[:2], []string{"/tmp", "/var/tmp"}) || f.WorkBases[2] != f.CacheHome {
		t.Errorf("work bases %v: cleanup must scan /tmp, /var/tmp and the cache dir", f.WorkBases)
	}
	// Stacked mounts: the last one on a mount point counts.
	f = probeWith(t, "", plain+"tmpfs /tmp tmpfs rw,noexec 0 0\ntmpfs /tmp tmpfs rw 0 0\n")
	if f.WorkBase != "/tmp" {
		t.Errorf("/tmp remounted exec over a noexec one: work base %q", f.WorkBase)
	}
	// The inventory's work_dir is the only candidate.
	dir := t.TempDir()
	if f := probeWith(t, dir, plain); f.WorkBase != dir || f.WorkBases[0] != dir {
		t.Errorf("work_dir %s: work base %q, bases %v", dir, f.WorkBase, f.WorkBases)
	}
	f = probeWith(t, dir, plain+"tmpfs "+dir+" tmpfs rw,noexec 0 0\n")
	f.Docker, f.DockerErr = DockerDirect, nil // this machine's docker is not the point
	if err := f.Usable(); f.WorkBase != "" || !errors.Is(err, ErrNoWorkDir) || !strings.Contains(err.Error(), "set work_dir:") {
		t.Errorf("work_dir on a noexec mount: base %q, usable %v", f.WorkBase, err)
	}
	// Everything noexec: say so, and what to do.
	f = probeWith(t, "", "/dev/sda1 / ext4 rw,noexec 0 0\n")
	f.Docker, f.DockerErr = DockerDirect, nil
	if err := f.Usable(); !errors.Is(err, ErrNoWorkDir) || !f.CacheNoExec {
		t.Errorf("all noexec: usable %v, cache noexec %v", err, f.CacheNoExec)
	}
}

// fakeDockerCLI is a docker CLI over a dir of files named by image
// reference: image inspect, image ls (of one repository) and image rm.
const fakeDockerCLI = `#!/bin/sh
st=%s
case "$1 $2" in
"image inspect") [ -e "$st/$3" ];;
"image ls") for f in "$st"/*; do [ -e "$f" ] || continue; r=${f##*/}; case "$r" in "$5":*) echo "$r";; esac; done;;
"image rm") rm "$st/$3";;
*) exit 2;;
esac
`

func TestClient_RemoveTempImagesWaitsForTheLoadADeadNodeLeftInFlight(t *testing.T) {
	base, bin, images := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fmt.Sprintf(fakeDockerCLI, images)), 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Conn{transport: localHost{host: inventory.Host{Name: "local"}, bin: bin}}
	image := func(ref string) {
		if err := os.WriteFile(filepath.Join(images, ref), nil, 0o644); err != nil {
			t.Error(err)
		}
	}
	// The node of job "dead" loaded its first layer, sent the whole
	// archive of its first two and was killed: the daemon creates the
	// second temporary image a second later. Another job's image stays.
	first, second, other := jobspec.TempRef("dead", 1), jobspec.TempRef("dead", 2), jobspec.TempRef("other", 1)
	image(first)
	image(other)
	dir := filepath.Join(base, jobspec.WorkDirName("dead"))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, jobspec.LoadingFile), []byte(second+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	time.AfterFunc(time.Second, func() { image(second); close(done) })
	t.Cleanup(func() { <-done })

	got, err := c.RemoveTempImages(context.Background(), "dead", true, []string{t.TempDir(), base})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{first, second}; !slices.Equal(got, want) {
		t.Errorf("removed %v, want %v", got, want)
	}
	left, _ := os.ReadDir(images)
	if len(left) != 1 || left[0].Name() != other {
		t.Errorf("left in the daemon: %v, want just %s", left, other)
	}
}

func TestAliveWithin_IsTheContractsValue(t *testing.T) {
	if want := fmt.Sprint(int(jobspec.AliveWithin / time.Second)); aliveWithin != want {
		t.Fatalf("the scripts take a node for hung after %s s, the contract says %s s", aliveWithin, want)
	}
}

// runOnly is a transport whose Run fails with err and nothing else works.
type runOnly struct {
	transport
	err error
}

func (r runOnly) Host() inventory.Host { return inventory.Host{Name: "h1"} }
func (r runOnly) Run(context.Context, openssh.Command) ([]byte, error) {
	return nil, r.err
}

func TestProbe_BlamesTheShellOnlyWhenTheScriptRan(t *testing.T) {
	for _, c := range []struct {
		name     string
		err      error
		notLinux bool
	}{
		{"script exits 127", &openssh.ExitError{Cmd: "sh", Code: 127, Stderr: "fish: Unknown command"}, true},
		{"connection lost mid-script", &openssh.ExitError{Cmd: "sh", Code: -1, Signal: "unknown (connection lost?)"}, false},
		{"session refused", fmt.Errorf("open session: %w", io.EOF), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := (&Conn{transport: runOnly{err: c.err}}).Probe(context.Background(), false)
			if err == nil {
				t.Fatal("probe succeeded")
			}
			if got := errors.Is(err, ErrNotLinux); got != c.notLinux {
				t.Errorf("%v: not linux %v, want %v", err, got, c.notLinux)
			}
			if !c.notLinux && strings.Contains(err.Error(), "POSIX") {
				t.Errorf("%v: blames the shell", err)
			}
		})
	}
}

// countingTools makes a dir of wrappers, one per tool, that log the
// tool's name to a file and run the real one: put first on PATH, it
// counts the programs a script starts. It returns the dir and a function
// that reads the names logged so far (and clears the log).
func countingTools(t *testing.T, tools ...string) (string, func() []string) {
	t.Helper()
	dir, log := t.TempDir(), filepath.Join(t.TempDir(), "started")
	for _, tool := range tools {
		real, err := exec.LookPath(tool)
		if err != nil {
			continue // the script finds none either
		}
		w := fmt.Sprintf("#!/bin/sh\necho %s >> '%s'\nexec '%s' \"$@\"\n", tool, log, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(w), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, func() []string {
		b, _ := os.ReadFile(log)
		os.Remove(log)
		return strings.Fields(string(b))
	}
}

// A job from a warm node cache costs the host one session for its work
// dir and its node, and no program beyond the cache hit's mkdir and stat;
// a cold cache answers where the binary goes and ends. The node gets its
// arguments (through sudo -n with become) and the session's stdin and
// stdout, after the answer line.
func TestStartCached_WarmCacheStartsTheNodeInTheWorkDirsSession(t *testing.T) {
	bin, started := countingTools(t, setupTools...)
	// A sudo that only passes the node an environment variable.
	sudo := "#!/bin/sh\n[ \"$1\" = -n ] && [ \"$2\" = -- ] || exit 9\nshift 2\nBECAME=root exec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(sudo), 0o755); err != nil {
		t.Fatal(err)
	}
	var sessions atomic.Int32
	c := &Conn{transport: localHost{host: inventory.Host{Name: "local"}, bin: bin, sessions: &sessions}}
	ctx := context.Background()
	base := t.TempDir()
	cache := NodeCacheDir(filepath.Join(t.TempDir(), "cache"))
	node := []byte("#!/bin/sh\necho \"node ${BECAME:-user} $*\"\nread spec\necho \"spec $spec\"\n")
	sum := sha256.Sum256(node)
	sha := hex.EncodeToString(sum[:])
	job := func(id string) openssh.Command {
		return openssh.Command{Path: "ignored", Args: []string{"--job", id}}
	}

	wd, p, err := c.StartCached(ctx, base, "job1", cache, sha, job("job1"))
	if err != nil || p != nil || wd.Node.Cached || wd.Node.Path != CachedNodePath(cache, sha) || wd.Path != filepath.Join(base, "layercast-job1") {
		t.Fatalf("cold cache: %+v, %v, %v; want the place and no node", wd, p, err)
	}
	if st, err := os.Stat(wd.Path); err != nil || !st.IsDir() {
		t.Fatalf("cold cache: no work dir: %v", err)
	}
	if err := c.Upload(ctx, wd.Node.Path, Binary{Gzip: gz(t, node), SHA256: sha}); err != nil {
		t.Fatal(err)
	}

	for _, become := range []bool{false, true} {
		id := fmt.Sprintf("job-%t", become)
		cmd := job(id)
		cmd.Become = become
		sessions.Store(0)
		started()
		wd, p, err := c.StartCached(ctx, base, id, cache, sha, cmd)
		if err != nil || p == nil || !wd.Node.Cached || wd.Node.Path != CachedNodePath(cache, sha) {
			t.Fatalf("warm cache: %+v, %v, %v; want the node started", wd, p, err)
		}
		if _, err := os.Stat(wd.Path); err != nil {
			t.Errorf("warm cache: no work dir: %v", err)
		}
		if _, err := io.WriteString(p.Stdin(), "the spec\n"); err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(p.Stdout())
		if err := p.Wait(); err != nil {
			t.Fatal(err)
		}
		who := map[bool]string{false: "user", true: "root"}[become]
		if want := "node " + who + " --job " + id + "\nspec the spec\n"; string(out) != want {
			t.Errorf("become %t: the node wrote %q, want %q", become, out, want)
		}
		if n := sessions.Load(); n != 1 {
			t.Errorf("become %t: %d sessions, want 1", become, n)
		}
		if got, want := started(), []string{"mkdir", "stat"}; !slices.Equal(got, want) {
			t.Errorf("become %t: a cache hit started %q, want %q (and the node)", become, got, want)
		}
	}

	// A cache that cannot be made: the error says why, no node, no dir.
	home := filepath.Join(t.TempDir(), "cache")
	if err := os.WriteFile(home, []byte("not a dir"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, p, err = c.StartCached(ctx, base, "job3", NodeCacheDir(home), sha, job("job3"))
	if err == nil || p != nil || wd.Path != "" || !strings.Contains(err.Error(), "mkdir") {
		t.Fatalf("broken cache: %+v, %v, %v; want mkdir's error and nothing to clean up", wd, p, err)
	}
	if _, err := os.Stat(filepath.Join(base, "layercast-job3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed command left its work dir: %v", err)
	}
}

// The tools the setup scripts might start.
var setupTools = []string{"uname", "id", "awk", "df", "dirname", "cut", "tr", "mkdir", "rmdir", "find", "touch",
	"openssl", "sha256sum", "rm", "gzip", "chmod", "mv", "stat", "pwd", "docker", "sudo"}

// A job's probe starts uname, one awk and one df, and nothing else: on a
// busy host every process start counts (probeScript).
func TestProbe_StartsThreePrograms(t *testing.T) {
	bin, started := countingTools(t, setupTools...)
	c := &Conn{transport: localHost{host: inventory.Host{Name: "local"}, bin: bin}}
	f, err := c.Probe(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if f.WorkBase == "" || f.WorkFree <= 0 || f.Arch != runtime.GOARCH || f.User == "" {
		t.Fatalf("probe facts: %+v", f)
	}
	got := started()
	slices.Sort(got)
	// id runs only when sshd set no $USER, as here.
	if want := []string{"awk", "df", "id", "uname"}; !slices.Equal(got, want) {
		t.Errorf("the probe started %q, want %q", got, want)
	}
}

// A cache hit's work dir starts mkdir and stat only (the binary's stamp
// matches); without a stamp it hashes the binary and writes one, so the
// next job is back to two; find runs when the cache holds other files, to
// prune them.
func TestWorkDir_CacheHitStartsTwoPrograms(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl here: sha256sum stands in after it")
	}
	bin, started := countingTools(t, setupTools...)
	c := &Conn{transport: localHost{host: inventory.Host{Name: "local"}, bin: bin}}
	ctx := context.Background()
	base := t.TempDir()
	cache := NodeCacheDir(filepath.Join(t.TempDir(), "cache"))
	node := bytes.Repeat([]byte("#!/bin/sh\necho node\n"), 1000)
	sum := sha256.Sum256(node)
	sha := hex.EncodeToString(sum[:])
	wd, err := c.MakeWorkDir(ctx, base, "job1", cache, sha)
	if err != nil || wd.Node.Cached {
		t.Fatalf("first job: %+v, %v", wd, err)
	}
	if err := c.Upload(ctx, wd.Node.Path, Binary{Gzip: gz(t, node), SHA256: sha}); err != nil {
		t.Fatal(err)
	}
	started()
	wd, err = c.MakeWorkDir(ctx, base, "job2", cache, sha)
	if err != nil || !wd.Node.Cached {
		t.Fatalf("second job: %+v, %v; want a cache hit", wd, err)
	}
	if got, want := started(), []string{"mkdir", "stat"}; !slices.Equal(got, want) {
		t.Errorf("a cache hit started %q, want %q", got, want)
	}
	// A cache from before stamps: the hash, then the stamp.
	if err := os.Remove(wd.Node.Path + jobspec.CacheStampSuffix); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]string{{"mkdir", "openssl", "stat", "mv"}, {"mkdir", "stat"}} {
		wd, err = c.MakeWorkDir(ctx, base, fmt.Sprintf("job2-%d", i), cache, sha)
		if err != nil || !wd.Node.Cached {
			t.Fatalf("job %d after the stamp went: %+v, %v; want a cache hit", i, wd, err)
		}
		if got := started(); !slices.Equal(got, want) {
			t.Errorf("job %d after the stamp went started %q, want %q", i, got, want)
		}
	}
	// Another binary in the cache: find looks at it.
	if err := os.WriteFile(filepath.Join(cache, NodeBinaryName+"-"+strings.Repeat("cd", 32)), nil, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MakeWorkDir(ctx, base, "job3", cache, sha); err != nil {
		t.Fatal(err)
	}
	if got := started(); !slices.Contains(got, "find") {
		t.Errorf("with another binary in the cache the work dir started %q, want find among them", got)
	}
}

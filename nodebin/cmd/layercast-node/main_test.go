package main_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/internal/dockerdtest"
	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
)

// binary is the node binary built once for all tests, as it ships (static).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lcnode-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "layercast-node")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build node binary: %v\n%s", err, b)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// install copies the binary into dir, as the bastion's upload does.
func install(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layercast-node")
	if err := os.WriteFile(out, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// proc is the node binary running one job, started from inside its work
// dir as the bastion does it.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  io.ReadCloser
	events  chan jobspec.Event
	stderr  syncBuffer
	dir     string
	exited  chan struct{} // closed once the process is reaped
	waitErr error
}

func startNode(t *testing.T, spec *jobspec.Spec) *proc {
	t.Helper()
	spec.WorkDir = filepath.Join(t.TempDir(), "layercast-job1")
	if err := os.MkdirAll(spec.WorkDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, dir: spec.WorkDir, exited: make(chan struct{})}
	p.cmd = exec.Command(install(t, spec.WorkDir))
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if p.stdout, err = p.cmd.StdoutPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	p.events = make(chan jobspec.Event, 100)
	go func() {
		defer close(p.events)
		sc := bufio.NewScanner(p.stdout)
		for sc.Scan() {
			var ev jobspec.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("stdout line is not an event: %q", sc.Text())
				return
			}
			p.events <- ev
		}
	}()
	line, _ := json.Marshal(spec)
	fmt.Fprintf(p.stdin, "%s\n", line)
	return p
}

// until reads events until match; it fails the test on EOF or after a
// minute.
func (p *proc) until(match func(jobspec.Event) bool) jobspec.Event {
	p.t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("stdout ended; stderr:\n%s", p.stderr.String())
			}
			if match(ev) {
				return ev
			}
		case <-timeout:
			p.t.Fatalf("no such event within a minute; stderr:\n%s", p.stderr.String())
		}
	}
}

// wait returns the exit code, failing after a minute.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		err := p.waitErr
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		} else if err != nil {
			p.t.Fatal(err)
		}
		return 0
	case <-time.After(time.Minute):
		p.t.Fatalf("node still running after a minute; stderr:\n%s", p.stderr.String())
		return -1
	}
}

func (p *proc) assertDirGone() {
	p.t.Helper()
	if _, err := os.Stat(p.dir); !errors.Is(err, os.ErrNotExist) {
		p.t.Errorf("work dir %s (with the binary in it) still there: %v", p.dir, err)
	}
}

// presentImage starts a daemon holding an image and returns a spec for it.
func presentImage(t *testing.T) (*jobspec.Spec, *dockerdtest.Daemon) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts dockerd")
	}
	dd := dockerdtest.Start(t)
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 10000)}, false, "bin")
	d := dockerimage.New(dd.Client(t), nil)
	files, err := img.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	undo, err := d.Record(t.Context(), "lab/old:1", img.ID)
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader(undo, dockerimage.Image{Ref: "lab/old:1", ID: img.ID, Config: img.Config, Names: img.Names(), Job: "pre"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(t.Context(), files); err != nil {
		t.Fatal(err)
	}
	spec := node.SpecFor(img, "lab/app:1", "")
	spec.DockerHost = dd.Host
	return spec, dd
}

func TestBinary_StopEndsTheJobAndRemovesItsDir(t *testing.T) {
	spec, dd := presentImage(t)
	p := startNode(t, spec)
	if _, err := os.Stat(filepath.Join(p.dir, "node.pid")); err != nil {
		// The pid file is written before the first event.
		p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventState })
	}
	done := p.until(func(ev jobspec.Event) bool { return ev.State == jobspec.StateDone })
	if done.ImageID != spec.ImageID {
		t.Errorf("done with %s", done.ImageID)
	}
	fmt.Fprintln(p.stdin, `{"kind":"stop"}`)
	p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventExit })
	if code := p.wait(); code != node.ExitOK {
		t.Errorf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
	p.assertDirGone()
	got, err := dd.Client(t).ImageInspect(t.Context(), "lab/app:1")
	if err != nil || got.ID != spec.ImageID {
		t.Errorf("lab/app:1: %v %s", err, got.ID)
	}
}

func TestBinary_ExitsWithoutHeartbeats(t *testing.T) {
	spec, _ := presentImage(t)
	spec.Heartbeat = jobspec.Duration(3 * time.Second)
	p := startNode(t, spec)
	p.until(func(ev jobspec.Event) bool { return ev.State == jobspec.StateDone })
	// stdin stays open and silent.
	if code := p.wait(); code != node.ExitCancelled {
		t.Errorf("exit %d, want %d", code, node.ExitCancelled)
	}
	p.assertDirGone()
	if !strings.Contains(p.stderr.String(), "no control line for 3s") {
		t.Errorf("stderr does not say why:\n%s", p.stderr.String())
	}
}

func TestBinary_ExitsWhenStdoutBreaks(t *testing.T) {
	spec, _ := presentImage(t)
	p := startNode(t, spec)
	// Broken before the node's first event (it still reads its spec and
	// asks its daemon): the first event meets a broken pipe. Not after
	// done: a done node whose transfer does not change writes nothing, and
	// learns of a gone bastion from its stdin or the heartbeats.
	p.stdout.Close()
	go func() {
		for range 100 { // heartbeats, so only the broken stdout can end it
			if _, err := fmt.Fprintln(p.stdin, `{"kind":"heartbeat"}`); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	if code := p.wait(); code != node.ExitCancelled {
		t.Errorf("exit %d, want %d (killed by SIGPIPE?); stderr:\n%s", code, node.ExitCancelled, p.stderr.String())
	}
	p.assertDirGone()
}

func TestBinary_SIGTERMCleansUp(t *testing.T) {
	spec, _ := presentImage(t)
	p := startNode(t, spec)
	p.until(func(ev jobspec.Event) bool { return ev.State == jobspec.StateDone })
	p.cmd.Process.Signal(os.Interrupt)
	p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventExit })
	if code := p.wait(); code != node.ExitCancelled {
		t.Errorf("exit %d", code)
	}
	p.assertDirGone()
}

func TestBinary_NoDaemonFailsWithAClearMessage(t *testing.T) {
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 100)}, false, "x")
	spec := node.SpecFor(img, "lab/app:1", "")
	spec.DockerHost = "unix:///nonexistent/docker.sock"
	p := startNode(t, spec)
	ev := p.until(func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventError })
	if !strings.HasPrefix(ev.Message, "connect to docker: reach docker daemon at unix:///nonexistent/docker.sock (is it running, and may this user use it?)") {
		t.Errorf("error %q", ev.Message)
	}
	if code := p.wait(); code != node.ExitFailed {
		t.Errorf("exit %d", code)
	}
	p.assertDirGone()
}

// syncBuffer is a strings.Builder safe for the writer goroutine of exec.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

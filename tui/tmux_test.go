package tui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/testbed"
)

// TestConsole_TmuxOnLab drives the real console on a running lab through
// tmux: it picks the image, starts the job, opens a host's detail, waits
// for the summary and quits, capturing each screen as text.
//
//	LAYERCAST_TMUX_BINARY=./layercast \
//	LAYERCAST_LAB_INVENTORY=/path/to/lab/inventory.yaml \
//	LAYERCAST_LAB_IMAGE=lab/app:v3 \
//	LAYERCAST_TMUX_CAPTURE_DIR=/tmp/screens \
//	go test ./tui -run TestConsole_TmuxOnLab -v
//
// The captures land in LAYERCAST_TMUX_CAPTURE_DIR (setup.txt, run.txt,
// detail.txt, summary.txt) when it is set, and in the test log.
func TestConsole_TmuxOnLab(t *testing.T) {
	bin := os.Getenv("LAYERCAST_TMUX_BINARY")
	inv := os.Getenv("LAYERCAST_LAB_INVENTORY")
	image := os.Getenv("LAYERCAST_LAB_IMAGE")
	if bin == "" && os.Getenv("LAYERCAST_BIN") != "" {
		// Under `make test`: bring up a lab of 8 hosts and run the console
		// on its bastion.
		bin, inv, image = consoleOnLab(t, os.Getenv("LAYERCAST_BIN"))
	}
	if bin == "" || inv == "" || image == "" {
		t.Skip("set LAYERCAST_BIN (make test does), or LAYERCAST_TMUX_BINARY (a built layercast), LAYERCAST_LAB_INVENTORY and LAYERCAST_LAB_IMAGE to drive the console on a running lab through tmux")
	}
	tmuxPath, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed")
	}
	bin, err = filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// A private tmux server (its own socket) that only this test uses: it
	// never touches the operator's sessions, and killing it ends exactly
	// what the test started.
	tm := &tmuxSession{
		t:       t,
		ctx:     ctx,
		tmux:    tmuxPath,
		socket:  filepath.Join(t.TempDir(), "tmux.sock"),
		name:    "console",
		capture: os.Getenv("LAYERCAST_TMUX_CAPTURE_DIR"),
	}
	// The shell keeps the pane after the console exits, to read its status.
	script := fmt.Sprintf("%s -i %s; echo \"[layercast exited $?]\"; sleep 600", shellQuote(bin), shellQuote(inv))
	tm.run("-f", "/dev/null", "new-session", "-d", "-s", tm.name, "-x", "100", "-y", "30", "sh", "-c", script)
	t.Cleanup(func() {
		// Ends the server this test started, the shell and the console in it.
		out, err := exec.Command(tmuxPath, "-S", tm.socket, "kill-server").CombinedOutput()
		if err != nil {
			t.Logf("kill tmux server %s: %v: %s", tm.socket, err, out)
		}
	})

	tm.wait("", time.Minute, "new job", "selected", "local image")
	tm.keys("C-u")
	tm.text(image)
	tm.wait("setup", 10*time.Second, "image "+image)
	tm.keys("Enter")
	// An image the bastion lacks needs a second enter, to pull it.
	if screen := tm.waitAny(time.Minute, "throughput", "press enter again to pull"); !strings.Contains(screen, "throughput") {
		tm.keys("Enter")
	}

	tm.wait("run", 5*time.Minute, "throughput", "HOST", "downloading")
	tm.keys("Enter")
	tm.wait("detail", 30*time.Second, "LAYERS", "LOG", "esc back")
	tm.keys("Escape")

	summary := tm.wait("summary", 15*time.Minute, "RESULT", "TEARDOWN", "finished in")
	if !strings.Contains(summary, "have the image") {
		t.Errorf("not every host has the image:\n%s", summary)
	}
	tm.keys("q")
	tm.wait("", 30*time.Second, "[layercast exited 0]")
}

// consoleOnLab brings up a lab with an image and returns a script that
// runs layercast on the lab's bastion, the lab's inventory and the image.
func consoleOnLab(t *testing.T, layercast string) (bin, inv, image string) {
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 8, Rate: "100mbit"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := lab.MakeImage(ctx, testbed.ImageSpec{Tag: "lab/console:v1", Size: 60 * 1000 * 1000, Layers: 3})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := lab.Command(ctx, "bastion", layercast, "--cache-dir", filepath.Join(lab.Dir(), "cache"), "--log-file", filepath.Join(lab.Dir(), "layercast.log"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		quoted[i] = shellQuote(a)
	}
	script := filepath.Join(t.TempDir(), "layercast-on-bastion")
	body := "#!/bin/sh\nexec " + strings.Join(quoted, " ") + ` "$@"` + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, lab.InventoryPath(), img.Tag
}

type tmuxSession struct {
	t       *testing.T
	ctx     context.Context
	tmux    string
	socket  string
	name    string
	capture string // directory for the captured screens; empty: none
}

func (s *tmuxSession) run(args ...string) string {
	s.t.Helper()
	cmd := exec.CommandContext(s.ctx, s.tmux, append([]string{"-S", s.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// keys sends tmux key names (Enter, Escape, C-u, q).
func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	s.run(append([]string{"send-keys", "-t", s.name}, keys...)...)
}

// text types literally.
func (s *tmuxSession) text(text string) {
	s.t.Helper()
	s.run("send-keys", "-t", s.name, "-l", text)
}

// wait polls the pane until it shows every text, and returns the screen.
// A named screen is kept in the capture directory and the test log.
func (s *tmuxSession) wait(name string, timeout time.Duration, texts ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		screen := s.run("capture-pane", "-p", "-t", s.name)
		ok := true
		for _, want := range texts {
			if !strings.Contains(screen, want) {
				ok = false
				break
			}
		}
		if ok {
			if name != "" {
				s.t.Logf("%s screen:\n%s", name, screen)
				if s.capture != "" {
					if err := os.MkdirAll(s.capture, 0o755); err != nil {
						s.t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(s.capture, name+".txt"), []byte(screen), 0o644); err != nil {
						s.t.Fatal(err)
					}
				}
			}
			return screen
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the console never showed %q; screen:\n%s", texts, screen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAny polls the pane until it shows one of texts.
func (s *tmuxSession) waitAny(timeout time.Duration, texts ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		screen := s.run("capture-pane", "-p", "-t", s.name)
		for _, want := range texts {
			if strings.Contains(screen, want) {
				return screen
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the console never showed any of %q; screen:\n%s", texts, screen)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

package tui

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
	"github.com/charmbracelet/x/exp/golden"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/muesli/termenv"
)

const (
	testWidth  = 80
	testHeight = 24
	labInv     = "lab/inventory.yaml"
)

// recordingStart is when the recorded jobs in testdata started.
var recordingStart = time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)

// asciiRenderer pins the colour profile so that golden files hold text.
func asciiRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard)
	r.SetColorProfile(termenv.Ascii)
	r.SetHasDarkBackground(true)
	return r
}

func labCatalog() *FakeCatalog {
	hosts := make([]InventoryHost, 8)
	for i := range hosts {
		rack := "rack1"
		if i >= 4 {
			rack = "rack2"
		}
		role := "web"
		if i%2 == 1 {
			role = "worker"
		}
		hosts[i] = InventoryHost{
			Name:    "h0" + string(rune('1'+i)),
			Address: "10.99.0." + string(rune('1'+i)) + "1",
			Groups:  []string{rack},
			Labels:  map[string]string{"rack": rack, "role": role},
		}
	}
	return &FakeCatalog{
		Inventories: map[string]Inventory{labInv: {Hosts: hosts, Groups: []string{"rack1", "rack2"}}},
		ImageList: []Image{
			{Ref: "lab/app:v3", Size: 300_000_000, Layers: 5},
			{Ref: "lab/app:v2", Size: 290_400_000, Layers: 5},
			{Ref: "lab/base:1", Size: 80_000_000, Layers: 1},
			{Ref: "nginx:1.27", Size: 192_000_000, Layers: 7},
		},
	}
}

func readRecording(t testing.TB, name string) Recording {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, err := ReadRecording(f)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// testConfig is a console on fakes with a pinned profile and a frozen clock.
func testConfig(eng Engine, cat Catalog, now time.Time) Config {
	return Config{
		Engine:        eng,
		Catalog:       cat,
		InventoryPath: labInv,
		Renderer:      asciiRenderer(),
		Now:           func() time.Time { return now },
		FrameInterval: time.Millisecond,
		LogPath:       "/var/log/layercast.log",
	}
}

// console is a console under test: teatest drives it; frame holds the
// last frame it rendered, which waitFor reads.
type console struct {
	*teatest.TestModel
	frame *latestFrame
}

// latestFrame is the last View of the model under test.
type latestFrame struct {
	mu   sync.Mutex
	text string
}

func (f *latestFrame) set(s string) {
	f.mu.Lock()
	f.text = s
	f.mu.Unlock()
}

func (f *latestFrame) get() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.text
}

// observed records every frame of the model it wraps. (The terminal
// output only repaints lines that changed, so it cannot tell whether a
// text is on screen now.)
type observed struct {
	tea.Model
	frame *latestFrame
}

func (o observed) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	m, cmd := o.Model.Update(msg)
	o.frame.set(m.View())
	return observed{Model: m, frame: o.frame}, cmd
}

func startConsole(t *testing.T, cfg Config) *console {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &latestFrame{}
	m := observed{Model: New(ctx, cfg), frame: f}
	tm := teatest.NewTestModel(t, m, teatest.WithInitialTermSize(testWidth, testHeight))
	return &console{TestModel: tm, frame: f}
}

// waitFor waits until the screen shows every one of texts at once.
func waitFor(t *testing.T, c *console, texts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		frame := c.frame.get()
		missing := ""
		for _, s := range texts {
			if !strings.Contains(frame, s) {
				missing = s
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("screen never showed %q; last frame:\n%s", missing, frame)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func keyPress(s string) tea.KeyMsg {
	switch s {
	case "enter":
		return tea.KeyMsg{Type: tea.KeyEnter}
	case "tab":
		return tea.KeyMsg{Type: tea.KeyTab}
	case "esc":
		return tea.KeyMsg{Type: tea.KeyEsc}
	case "up":
		return tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		return tea.KeyMsg{Type: tea.KeyDown}
	case "space":
		return tea.KeyMsg{Type: tea.KeySpace, Runes: []rune{' '}}
	case "ctrl+c":
		return tea.KeyMsg{Type: tea.KeyCtrlC}
	case "ctrl+u":
		return tea.KeyMsg{Type: tea.KeyCtrlU}
	}
	return tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(s)}
}

func press(tm *console, keys ...string) {
	for _, k := range keys {
		tm.Send(keyPress(k))
	}
}

// finalView stops the console and returns its last frame.
func finalView(t *testing.T, tm *console) string {
	t.Helper()
	if err := tm.Quit(); err != nil {
		t.Fatal(err)
	}
	return tm.FinalModel(t, teatest.WithFinalTimeout(10*time.Second)).View()
}

// requireFrame checks that a frame fits the terminal and matches its
// golden file (refresh with go test ./tui -update).
func requireFrame(t *testing.T, frame string, width, height int) {
	t.Helper()
	lines := strings.Split(frame, "\n")
	if len(lines) > height {
		t.Errorf("frame has %d lines, terminal has %d", len(lines), height)
	}
	for i, l := range lines {
		if w := ansi.StringWidth(l); w > width {
			t.Errorf("line %d is %d cells wide, terminal has %d: %q", i+1, w, width, l)
		}
	}
	golden.RequireEqual(t, []byte(frame+"\n"))
}

func windowSize(w, h int) tea.WindowSizeMsg { return tea.WindowSizeMsg{Width: w, Height: h} }

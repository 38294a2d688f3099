// Package tui is layercast's admin console: a terminal UI to set up a job,
// follow it host by host and layer by layer, and act on its outcome.
//
// It consumes the engine's event stream (orchestrator.Event) and nothing
// else of the engine: the console and the headless printers read the same
// events. The engine and the bastion's catalog (inventory, local images)
// reach the console through the Engine and Catalog interfaces below, which
// cmd/layercast wires to the real implementations.
package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"github.com/layercast/layercast/orchestrator"
)

// Engine runs one job. Run emits job_started first and job_done last;
// cancelling ctx tears the job down, emitting a teardown event per host.
type Engine interface {
	Run(ctx context.Context, opts orchestrator.Options, sink orchestrator.Sink) (*orchestrator.Report, error)
}

// Catalog answers the setup screen's questions about the bastion.
type Catalog interface {
	// LoadInventory parses the inventory file at path.
	LoadInventory(path string) (Inventory, error)
	// Images lists the images in the bastion's local Docker daemon.
	Images(ctx context.Context) ([]Image, error)
}

// Inventory is what the console shows of an inventory file.
type Inventory struct {
	Path   string
	Hosts  []InventoryHost
	Groups []string // group names, in file order
	// Ignored lists what the inventory holds that layercast does not
	// use, one line each.
	Ignored []string
}

// InventoryHost is one host of an inventory.
type InventoryHost struct {
	Name    string
	Address string
	Groups  []string
	Labels  map[string]string
}

// Image is one image in the bastion's local Docker daemon.
type Image struct {
	Ref    string // repository:tag
	ID     string
	Size   int64
	Layers int
}

// Config is what the console needs from cmd/layercast.
type Config struct {
	Engine  Engine
	Catalog Catalog
	// InventoryPath is the initial inventory (-i, or ./inventory.yaml).
	InventoryPath string
	// Image pre-fills the image field; may be empty.
	Image string
	// Options carries the job options set by flags; the console fills in
	// InventoryPath, Hosts, Groups, Image, Mode, Tunnel and Concurrency.
	Options orchestrator.Options
	// LogPath is the file the engine logs to; shown to the operator.
	LogPath string
	// WriteReport writes the JSON report and returns where it went.
	// Nil disables the key.
	WriteReport func(*orchestrator.Report) (string, error)

	// Renderer styles the output. Nil: a renderer on stdout that detects
	// the terminal's colours and honours NO_COLOR.
	Renderer *lipgloss.Renderer
	// Now is the clock for elapsed times and ETA. Nil: time.Now.
	Now func() time.Time
	// FrameInterval is the shortest time between two batches of engine
	// events reaching the screen. Zero: 50ms.
	FrameInterval time.Duration
	// Logger receives what the console itself has to log (engine panics).
	// Nil: slog.Default().
	Logger *slog.Logger
}

// ErrJobAbandoned is returned by Run when the operator quit while a job was
// still tearing down.
var ErrJobAbandoned = errors.New("console closed before the job finished tearing down")

const defaultFrameInterval = 50 * time.Millisecond

func (c Config) withDefaults(out io.Writer) Config {
	if c.Renderer == nil {
		c.Renderer = lipgloss.NewRenderer(out)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.FrameInterval <= 0 {
		c.FrameInterval = defaultFrameInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.InventoryPath == "" {
		c.InventoryPath = "./inventory.yaml"
	}
	return c
}

// New returns the console's model. Jobs started from it run under ctx;
// when ctx ends, a running job is torn down and the console quits once the
// teardown finished.
func New(ctx context.Context, cfg Config) tea.Model {
	return newModel(ctx, cfg.withDefaults(os.Stdout))
}

// Run opens the console on the terminal and returns when the operator
// quits. Logs must already go to a file: nothing else may write to the
// terminal while the console runs.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Engine == nil || cfg.Catalog == nil {
		return errors.New("tui: config needs an Engine and a Catalog")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg = cfg.withDefaults(os.Stdout)
	// Ask the terminal for its colours now: once the console reads the
	// keyboard, the terminal's answer would arrive as keys.
	cfg.Renderer.ColorProfile()
	cfg.Renderer.HasDarkBackground()
	m := New(ctx, cfg)
	p := tea.NewProgram(m,
		tea.WithAltScreen(),
		// SIGINT arrives as a key (raw mode); SIGTERM reaches us through ctx
		// from main, so that a job is torn down before the console exits.
		tea.WithoutSignalHandler(),
	)
	final, err := p.Run()
	if err != nil {
		return fmt.Errorf("run console: %w", err)
	}
	if fm, ok := final.(model); ok && fm.jobRunning() {
		return ErrJobAbandoned
	}
	return nil
}

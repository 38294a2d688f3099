package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/layercast/layercast/orchestrator"
)

// setupField is a focusable field of the setup screen, in tab order.
type setupField int

const (
	fieldInventory setupField = iota
	fieldImage
	fieldMode
	fieldTunnel
	fieldConcurrency
	fieldSource
	fieldMaxRate
	fieldHostRate
	fieldHosts
	fieldCount
)

func modeChoices() []orchestrator.Mode {
	return []orchestrator.Mode{orchestrator.ModeP2P, orchestrator.ModeRegistry, orchestrator.ModeAuto}
}

// concurrencyChoices are the values ←/→ step through; 0 is the engine's
// default.
func concurrencyChoices() []int { return []int{0, 1, 2, 4, 8, 16, 32, 64, 128, 256} }

func sourceChoices() []orchestrator.Source {
	return []orchestrator.Source{orchestrator.SourceAuto, orchestrator.SourceDaemon, orchestrator.SourceRegistry}
}

// rateChoices are the caps ←/→ step through, in bytes/s (0: none), with
// the one the flags gave first when it is none of them.
func rateChoices(given int64) []int64 {
	rates := []int64{0, 1e6, 5e6, 10e6, 25e6, 50e6, 100e6}
	if !slices.Contains(rates, given) {
		rates = append([]int64{given}, rates...)
	}
	return rates
}

const maxCompletions = 4

// setupModel is the job setup screen.
type setupModel struct {
	keys  setupKeys
	focus setupField
	base  orchestrator.Options
	cat   Catalog

	invInput lineInput
	imgInput lineInput
	filter   lineInput
	// filtering: keys go to the host filter.
	filtering bool

	inv        Inventory
	invPath    string // path of the inventory shown
	invErr     error
	invLoading bool
	loadedOnce bool

	images     []Image
	imgErr     error
	imgLoading bool
	matches    []int // indexes into images that match the image field
	match      int   // highlighted completion

	selected map[string]bool
	group    string // "all", a group name, or "" for a hand-made selection
	visible  []int  // indexes into inv.Hosts that pass the filter
	cursor   int
	offset   int

	mode        orchestrator.Mode
	tunnel      bool
	concurrency int
	source      orchestrator.Source
	maxRate     int64 // the bastion's upload cap, bytes/s
	hostRate    int64 // each host's cap where the inventory sets none

	attempted bool   // Enter was pressed to start at least once
	pullAsked string // unknown image the console asked about pulling
	pullOK    string // unknown image the operator confirmed to pull
	startErr  string // why the last job did not start
}

type inventoryMsg struct {
	path string
	inv  Inventory
	err  error
}

type imagesMsg struct {
	images []Image
	err    error
}

func newSetupModel(cfg Config, c *common) setupModel {
	s := setupModel{
		keys:        newSetupKeys(),
		focus:       fieldImage,
		base:        cfg.Options,
		cat:         cfg.Catalog,
		invInput:    newLineInput("path to inventory.yaml"),
		imgInput:    newLineInput("image reference, e.g. app:v3"),
		filter:      newLineInput("name, group, address or label"),
		selected:    make(map[string]bool),
		group:       "all",
		mode:        cfg.Options.WithDefaults().Mode,
		tunnel:      cfg.Options.Tunnel,
		concurrency: cfg.Options.Concurrency,
		source:      cfg.Options.WithDefaults().Source,
		maxRate:     cfg.Options.MaxRate,
		hostRate:    cfg.Options.HostMaxRate,
		invPath:     cfg.InventoryPath,
		invLoading:  true,
		imgLoading:  true,
	}
	s.invInput.SetValue(cfg.InventoryPath)
	s.imgInput.SetValue(cfg.Image)
	s.imgInput.Focus()
	return s.resize(c)
}

func (s setupModel) init(ctx context.Context) tea.Cmd {
	return tea.Batch(loadInventory(s.cat, s.invPath), loadImages(ctx, s.cat))
}

func loadInventory(cat Catalog, path string) tea.Cmd {
	return func() tea.Msg {
		inv, err := cat.LoadInventory(path)
		if err != nil {
			err = fmt.Errorf("load inventory %s: %w", path, err)
		}
		return inventoryMsg{path: path, inv: inv, err: err}
	}
}

const imagesTimeout = 15 * time.Second

func loadImages(ctx context.Context, cat Catalog) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(ctx, imagesTimeout)
		defer cancel()
		imgs, err := cat.Images(ctx)
		if err != nil {
			err = fmt.Errorf("list the bastion's images: %w", err)
		}
		return imagesMsg{images: imgs, err: err}
	}
}

func (s setupModel) resize(c *common) setupModel {
	w := max(c.width-labelWidth-30, 16)
	s.invInput.width = w
	s.imgInput.width = w
	s.filter.width = max(c.width/3, 12)
	return s
}

// setInventory shows a freshly loaded inventory, keeping the selection of
// hosts that are still in it.
func (s setupModel) setInventory(msg inventoryMsg) setupModel {
	s.invLoading = false
	s.invErr = msg.err
	if msg.err != nil {
		return s
	}
	s.inv = msg.inv
	s.invPath = msg.path
	keep := make(map[string]bool)
	for _, h := range s.inv.Hosts {
		if !s.loadedOnce || s.selected[h.Name] {
			keep[h.Name] = true
		}
	}
	s.selected = keep
	if !s.loadedOnce {
		s.group = "all"
	}
	s.loadedOnce = true
	s.cursor, s.offset = 0, 0
	return s.refilter()
}

func (s setupModel) setImages(msg imagesMsg) setupModel {
	s.imgLoading = false
	s.imgErr = msg.err
	s.images = msg.images
	slices.SortFunc(s.images, func(a, b Image) int { return strings.Compare(a.Ref, b.Ref) })
	return s.rematch()
}

// rematch finds the images matching the image field.
func (s setupModel) rematch() setupModel {
	q := strings.ToLower(strings.TrimSpace(s.imgInput.Value()))
	s.matches = s.matches[:0]
	for i, im := range s.images {
		if q == "" || strings.Contains(strings.ToLower(im.Ref), q) {
			s.matches = append(s.matches, i)
		}
	}
	// Exact match first, then prefixes, then the rest.
	rank := func(i int) int {
		ref := strings.ToLower(s.images[i].Ref)
		switch {
		case ref == q:
			return 0
		case strings.HasPrefix(ref, q):
			return 1
		default:
			return 2
		}
	}
	slices.SortStableFunc(s.matches, func(a, b int) int { return rank(a) - rank(b) })
	s.match = min(s.match, max(len(s.matches)-1, 0))
	return s
}

// refilter recomputes the hosts that pass the filter.
func (s setupModel) refilter() setupModel {
	q := strings.ToLower(strings.TrimSpace(s.filter.Value()))
	s.visible = s.visible[:0]
	for i, h := range s.inv.Hosts {
		if q == "" || hostMatches(h, q) {
			s.visible = append(s.visible, i)
		}
	}
	s.cursor = min(s.cursor, max(len(s.visible)-1, 0))
	return s
}

func hostMatches(h InventoryHost, q string) bool {
	if strings.Contains(strings.ToLower(h.Name), q) || strings.Contains(strings.ToLower(h.Address), q) {
		return true
	}
	for _, g := range h.Groups {
		if strings.Contains(strings.ToLower(g), q) {
			return true
		}
	}
	for k, v := range h.Labels {
		if strings.Contains(strings.ToLower(k+"="+v), q) {
			return true
		}
	}
	return false
}

// image is the image named by the field, when the bastion has it.
func (s setupModel) image() (Image, bool) {
	ref := strings.TrimSpace(s.imgInput.Value())
	for _, im := range s.images {
		if im.Ref == ref {
			return im, true
		}
	}
	return Image{}, false
}

func (s setupModel) selectedHosts() []string {
	var out []string
	for _, h := range s.inv.Hosts {
		if s.selected[h.Name] {
			out = append(out, h.Name)
		}
	}
	return out
}

// problem is something that stops the job from starting (or, when !block,
// that the operator should know).
type problem struct {
	text  string
	block bool
}

func (s setupModel) problems() []problem {
	var ps []problem
	add := func(block bool, f string, a ...any) { ps = append(ps, problem{fmt.Sprintf(f, a...), block}) }
	if s.startErr != "" {
		add(false, "%s", s.startErr)
	}
	switch {
	case s.invLoading:
		add(true, "loading the inventory…")
	case s.invErr != nil:
		add(true, "%v — fix the file, then press enter on Inventory to reload", s.invErr)
	case len(s.inv.Hosts) == 0:
		add(true, "the inventory %s lists no hosts — add some under hosts:", s.invPath)
	}
	if n := len(s.inv.Ignored); n > 0 && s.invErr == nil {
		add(false, "the inventory holds %s layercast does not use (the job's log lists them): %s", plural(n, "setting", "settings"), strings.Join(s.inv.Ignored, "; "))
	}
	if s.imgErr != nil {
		add(false, "%v — any image you type is read from its registry", s.imgErr)
	}
	if !s.attempted {
		return ps
	}
	if s.invErr == nil && len(s.inv.Hosts) > 0 && len(s.selectedHosts()) == 0 {
		add(true, "no hosts selected — on Hosts, press a to select all, g for a group, space for one")
	}
	ref := strings.TrimSpace(s.imgInput.Value())
	_, known := s.image()
	switch {
	case ref == "":
		add(true, "no image — type a reference on Image; the list shows the bastion's images")
	case strings.ContainsAny(ref, " \t"):
		add(true, "image %q has spaces — a reference looks like repo/name:tag", ref)
	case !known && s.imgErr == nil && !s.imgLoading && s.pullOK != ref && s.source != orchestrator.SourceRegistry:
		add(true, "image %q is not on the bastion — pick a listed one, or press enter again to take it from its registry", ref)
	case !known && s.pullOK == ref:
		add(false, "image %q is not on the bastion: the job reads it from its registry", ref)
	}
	return ps
}

// blocked reports whether any problem stops the job.
func blocked(ps []problem) bool {
	return slices.ContainsFunc(ps, func(p problem) bool { return p.block })
}

// options builds the job's options from the fields.
func (s setupModel) options() (orchestrator.Options, []string) {
	opts := s.base
	opts.InventoryPath = s.invPath
	opts.Image = strings.TrimSpace(s.imgInput.Value())
	opts.Mode = s.mode
	opts.Tunnel = s.tunnel
	opts.Concurrency = s.concurrency
	opts.Source, opts.MaxRate, opts.HostMaxRate = s.source, s.maxRate, s.hostRate
	opts.Groups = nil
	hosts := s.selectedHosts()
	opts.Hosts = hosts
	if len(hosts) == len(s.inv.Hosts) {
		opts.Hosts = nil // every host of the inventory
	}
	return opts, hosts
}

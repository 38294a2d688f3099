package tui

import (
	"github.com/charmbracelet/lipgloss"

	"github.com/layercast/layercast/orchestrator"
)

// styles are every style the console uses, built once from one renderer so
// that the colour profile (and NO_COLOR) is decided in one place.
type styles struct {
	title    lipgloss.Style // app name
	subtle   lipgloss.Style // secondary text
	faint    lipgloss.Style // hints, separators
	label    lipgloss.Style // field labels
	focused  lipgloss.Style // label of the focused field
	value    lipgloss.Style // field values
	selected lipgloss.Style // the chosen value among several
	header   lipgloss.Style // table headers
	cursor   lipgloss.Style // the row under the cursor
	ok       lipgloss.Style
	warn     lipgloss.Style
	bad      lipgloss.Style
	barFull  lipgloss.Style
	barEmpty lipgloss.Style
	barDone  lipgloss.Style
	barFail  lipgloss.Style
	key      lipgloss.Style // key names in help
	confirm  lipgloss.Style // the cancel confirmation bar
	states   map[orchestrator.HostState]lipgloss.Style
}

func newStyles(r *lipgloss.Renderer) *styles {
	c := func(light, dark string) lipgloss.AdaptiveColor {
		return lipgloss.AdaptiveColor{Light: light, Dark: dark}
	}
	var (
		accent  = c("#5A56E0", "#8E8BFF")
		muted   = c("#6B6B6B", "#9A9A9A")
		dim     = c("#9E9E9E", "#5C5C5C")
		green   = c("#1A7F37", "#4FD17A")
		yellow  = c("#9A6700", "#E3B341")
		red     = c("#CF222E", "#FF6B6B")
		blue    = c("#0969DA", "#58A6FF")
		cyan    = c("#1B7C83", "#39C5CF")
		magenta = c("#8250DF", "#C297FF")
	)
	s := &styles{
		title:    r.NewStyle().Bold(true).Foreground(accent),
		subtle:   r.NewStyle().Foreground(muted),
		faint:    r.NewStyle().Foreground(dim),
		label:    r.NewStyle().Foreground(muted),
		focused:  r.NewStyle().Bold(true).Foreground(accent),
		value:    r.NewStyle(),
		selected: r.NewStyle().Bold(true).Foreground(accent),
		header:   r.NewStyle().Bold(true).Foreground(muted),
		cursor:   r.NewStyle().Bold(true),
		ok:       r.NewStyle().Foreground(green),
		warn:     r.NewStyle().Foreground(yellow),
		bad:      r.NewStyle().Foreground(red),
		barFull:  r.NewStyle().Foreground(blue),
		barEmpty: r.NewStyle().Foreground(dim),
		barDone:  r.NewStyle().Foreground(green),
		barFail:  r.NewStyle().Foreground(red),
		key:      r.NewStyle().Bold(true),
		confirm:  r.NewStyle().Bold(true).Foreground(yellow),
	}
	s.states = map[orchestrator.HostState]lipgloss.Style{
		orchestrator.HostPending:     r.NewStyle().Foreground(dim),
		orchestrator.HostConnecting:  r.NewStyle().Foreground(muted),
		orchestrator.HostUploading:   r.NewStyle().Foreground(magenta),
		orchestrator.HostChecking:    r.NewStyle().Foreground(cyan),
		orchestrator.HostDownloading: r.NewStyle().Foreground(blue),
		orchestrator.HostImporting:   r.NewStyle().Foreground(yellow),
		orchestrator.HostDone:        r.NewStyle().Foreground(green),
		orchestrator.HostFailed:      r.NewStyle().Bold(true).Foreground(red),
		orchestrator.HostCancelled:   r.NewStyle().Foreground(yellow),
	}
	return s
}

func (s *styles) state(st orchestrator.HostState) lipgloss.Style {
	if v, ok := s.states[st]; ok {
		return v
	}
	return s.value
}

package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/key"
)

// keyMap holds the bindings shared by every screen; each screen adds its
// own in its *_keys.go file.
type keyMap struct {
	Up        key.Binding
	Down      key.Binding
	PageUp    key.Binding
	PageDown  key.Binding
	Home      key.Binding
	End       key.Binding
	Enter     key.Binding
	Back      key.Binding
	Filter    key.Binding
	Quit      key.Binding
	Interrupt key.Binding
}

func newKeyMap() keyMap {
	return keyMap{
		Up:        key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:      key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		PageUp:    key.NewBinding(key.WithKeys("pgup", "ctrl+u"), key.WithHelp("pgup", "page up")),
		PageDown:  key.NewBinding(key.WithKeys("pgdown", "ctrl+d"), key.WithHelp("pgdn", "page down")),
		Home:      key.NewBinding(key.WithKeys("home"), key.WithHelp("home", "first")),
		End:       key.NewBinding(key.WithKeys("end"), key.WithHelp("end", "last")),
		Enter:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open")),
		Back:      key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		Filter:    key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		Quit:      key.NewBinding(key.WithKeys("q"), key.WithHelp("q", "quit")),
		Interrupt: key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit")),
	}
}

// helpLine renders bindings as "key action · key action", dropping the
// ones that do not fit in width.
func helpLine(s *styles, width int, bindings ...key.Binding) string {
	sep := s.faint.Render(" · ")
	var b strings.Builder
	used := 0
	for _, k := range bindings {
		if !k.Enabled() || k.Help().Key == "" {
			continue
		}
		h := k.Help()
		item := s.key.Render(h.Key) + " " + s.subtle.Render(h.Desc)
		w := len([]rune(h.Key)) + 1 + len([]rune(h.Desc))
		if used > 0 {
			w += 3
		}
		if used+w > width {
			break
		}
		if used > 0 {
			b.WriteString(sep)
		}
		b.WriteString(item)
		used += w
	}
	return b.String()
}

package tui

import "github.com/charmbracelet/bubbles/key"

// detailKeys are the host detail's own bindings.
type detailKeys struct {
	Close key.Binding
	Older key.Binding
	Newer key.Binding
}

func newDetailKeys() detailKeys {
	return detailKeys{
		Close: key.NewBinding(key.WithKeys("esc", "enter", "q", "backspace"), key.WithHelp("esc", "back")),
		Older: key.NewBinding(key.WithKeys("up", "k", "pgup"), key.WithHelp("↑/pgup", "older log")),
		Newer: key.NewBinding(key.WithKeys("down", "j", "pgdown"), key.WithHelp("↓/pgdn", "newer log")),
	}
}

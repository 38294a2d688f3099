package tui

import "github.com/charmbracelet/bubbles/key"

// runKeys are the run screen's own bindings.
type runKeys struct {
	Detail key.Binding
	Sort   key.Binding
	Logs   key.Binding
	Cancel key.Binding
	Yes    key.Binding
	No     key.Binding
}

func newRunKeys() runKeys {
	return runKeys{
		Detail: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail")),
		Sort:   key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "sort")),
		Logs:   key.NewBinding(key.WithKeys("l"), key.WithHelp("l", "log pane")),
		Cancel: key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "cancel job")),
		Yes:    key.NewBinding(key.WithKeys("y", "Y", "ctrl+c"), key.WithHelp("y", "cancel the job")),
		No:     key.NewBinding(key.WithKeys("n", "N", "esc", "q"), key.WithHelp("n", "keep it running")),
	}
}

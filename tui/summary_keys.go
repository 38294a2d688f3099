package tui

import "github.com/charmbracelet/bubbles/key"

// summaryKeys are the summary screen's own bindings.
type summaryKeys struct {
	Retry  key.Binding
	Write  key.Binding
	Detail key.Binding
	New    key.Binding
	Quit   key.Binding
}

func newSummaryKeys() summaryKeys {
	return summaryKeys{
		Retry:  key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "retry failed")),
		Write:  key.NewBinding(key.WithKeys("w"), key.WithHelp("w", "write report")),
		Detail: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "detail")),
		New:    key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "new job")),
		Quit:   key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
	}
}

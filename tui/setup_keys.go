package tui

import "github.com/charmbracelet/bubbles/key"

// setupKeys are the setup screen's own bindings.
type setupKeys struct {
	Next   key.Binding
	Prev   key.Binding
	Start  key.Binding
	Toggle key.Binding
	All    key.Binding
	Group  key.Binding
	Left   key.Binding
	Right  key.Binding
	Reload key.Binding
}

func newSetupKeys() setupKeys {
	return setupKeys{
		Next:   key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "next field")),
		Prev:   key.NewBinding(key.WithKeys("shift+tab"), key.WithHelp("shift+tab", "previous")),
		Start:  key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "start")),
		Toggle: key.NewBinding(key.WithKeys(" "), key.WithHelp("space", "toggle")),
		All:    key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "all/none")),
		Group:  key.NewBinding(key.WithKeys("g"), key.WithHelp("g", "by group")),
		Left:   key.NewBinding(key.WithKeys("left", "h"), key.WithHelp("←/→", "change")),
		Right:  key.NewBinding(key.WithKeys("right", "l", " ")),
		Reload: key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "reload")),
	}
}

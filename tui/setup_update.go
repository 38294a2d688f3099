package tui

import (
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// send turns an intent into a command.
func send(msg tea.Msg) tea.Cmd { return func() tea.Msg { return msg } }

func (s setupModel) update(msg tea.Msg, c *common) (setupModel, tea.Cmd) {
	switch msg := msg.(type) {
	case inventoryMsg:
		return s.setInventory(msg), nil
	case imagesMsg:
		return s.setImages(msg), nil
	case tea.KeyMsg:
		return s.key(msg, c)
	}
	return s, nil
}

func (s setupModel) key(msg tea.KeyMsg, c *common) (setupModel, tea.Cmd) {
	if key.Matches(msg, c.keys.Interrupt) {
		return s, send(quitMsg{})
	}
	if s.filtering {
		return s.filterKey(msg, c)
	}
	switch {
	case key.Matches(msg, s.keys.Next):
		if s.focus == fieldImage && s.canComplete() {
			return s.complete(), nil
		}
		return s.setFocus((s.focus + 1) % fieldCount), nil
	case key.Matches(msg, s.keys.Prev):
		return s.setFocus((s.focus + fieldCount - 1) % fieldCount), nil
	}
	switch s.focus {
	case fieldInventory:
		if key.Matches(msg, s.keys.Reload) {
			path := strings.TrimSpace(s.invInput.Value())
			s.invLoading, s.invErr = true, nil
			return s, loadInventory(s.cat, path)
		}
		s.invInput, _ = s.invInput.update(msg)
		return s, nil
	case fieldImage:
		switch {
		case key.Matches(msg, s.keys.Start):
			if s.canComplete() && strings.TrimSpace(s.imgInput.Value()) != "" {
				return s.complete(), nil
			}
			return s.start()
		case msg.Type == tea.KeyUp:
			s.match = max(s.match-1, 0)
			return s, nil
		case msg.Type == tea.KeyDown:
			s.match = min(s.match+1, max(len(s.matches)-1, 0))
			return s, nil
		}
		var edited bool
		if s.imgInput, edited = s.imgInput.update(msg); edited {
			s.match = 0
			s = s.rematch()
		}
		return s, nil
	}
	// Fields that take no text: q quits, enter starts.
	switch {
	case key.Matches(msg, c.keys.Quit):
		return s, send(quitMsg{})
	case key.Matches(msg, s.keys.Start):
		return s.start()
	}
	switch s.focus {
	case fieldMode:
		s.mode = cycle(modeChoices(), s.mode, s.step(msg))
	case fieldTunnel:
		if s.step(msg) != 0 {
			s.tunnel = !s.tunnel
		}
	case fieldConcurrency:
		s.concurrency = cycle(concurrencyChoices(), s.concurrency, s.step(msg))
	case fieldSource:
		s.source = cycle(sourceChoices(), s.source, s.step(msg))
	case fieldMaxRate:
		s.maxRate = cycle(rateChoices(s.maxRate), s.maxRate, s.step(msg))
	case fieldHostRate:
		s.hostRate = cycle(rateChoices(s.hostRate), s.hostRate, s.step(msg))
	case fieldHosts:
		return s.hostsKey(msg, c), nil
	}
	return s, nil
}

// step is -1, +1 or 0 for a key that changes a choice.
func (s setupModel) step(msg tea.KeyMsg) int {
	switch {
	case key.Matches(msg, s.keys.Left):
		return -1
	case key.Matches(msg, s.keys.Right):
		return 1
	}
	return 0
}

// cycle moves from cur by step through choices, wrapping around.
func cycle[T comparable](choices []T, cur T, step int) T {
	i := 0
	for k, v := range choices {
		if v == cur {
			i = k
		}
	}
	n := len(choices)
	return choices[((i+step)%n+n)%n]
}

func (s setupModel) hostsKey(msg tea.KeyMsg, c *common) setupModel {
	page := max(s.hostRows(c)-1, 1)
	switch {
	case key.Matches(msg, c.keys.Up):
		s.cursor--
	case key.Matches(msg, c.keys.Down):
		s.cursor++
	case key.Matches(msg, c.keys.PageUp):
		s.cursor -= page
	case key.Matches(msg, c.keys.PageDown):
		s.cursor += page
	case key.Matches(msg, c.keys.Home):
		s.cursor = 0
	case key.Matches(msg, c.keys.End):
		s.cursor = len(s.visible) - 1
	case key.Matches(msg, s.keys.Toggle):
		if s.cursor < len(s.visible) {
			name := s.inv.Hosts[s.visible[s.cursor]].Name
			s.selected[name] = !s.selected[name]
			s.group = ""
		}
	case key.Matches(msg, s.keys.All):
		s = s.toggleAll()
	case key.Matches(msg, s.keys.Group):
		s = s.nextGroup()
	case key.Matches(msg, c.keys.Filter):
		s.filtering = true
		s.filter.Focus()
	case key.Matches(msg, c.keys.Back):
		s.filter.SetValue("")
		s = s.refilter()
	}
	s.cursor = max(min(s.cursor, len(s.visible)-1), 0)
	return s.scrolled(c)
}

func (s setupModel) filterKey(msg tea.KeyMsg, c *common) (setupModel, tea.Cmd) {
	switch {
	case key.Matches(msg, c.keys.Back):
		s.filter.SetValue("")
		s.filtering = false
		s.filter.Blur()
		return s.refilter(), nil
	case msg.Type == tea.KeyEnter, msg.Type == tea.KeyTab:
		s.filtering = false
		s.filter.Blur()
		return s, nil
	case msg.Type == tea.KeyUp, msg.Type == tea.KeyDown:
		return s.hostsKey(msg, c), nil
	}
	var edited bool
	if s.filter, edited = s.filter.update(msg); edited {
		s.cursor, s.offset = 0, 0
		s = s.refilter()
	}
	return s.scrolled(c), nil
}

// toggleAll selects every visible host, or clears them if all are selected.
func (s setupModel) toggleAll() setupModel {
	all := true
	for _, i := range s.visible {
		if !s.selected[s.inv.Hosts[i].Name] {
			all = false
			break
		}
	}
	for _, i := range s.visible {
		s.selected[s.inv.Hosts[i].Name] = !all
	}
	s.group = ""
	if !all && len(s.visible) == len(s.inv.Hosts) {
		s.group = "all"
	}
	return s
}

// nextGroup selects exactly the members of the next group (all hosts
// counting as the first group).
func (s setupModel) nextGroup() setupModel {
	choices := append([]string{"all"}, s.inv.Groups...)
	next := choices[0]
	for i, g := range choices {
		if g == s.group {
			next = choices[(i+1)%len(choices)]
		}
	}
	s.group = next
	clear(s.selected)
	for _, h := range s.inv.Hosts {
		if next == "all" || containsString(h.Groups, next) {
			s.selected[h.Name] = true
		}
	}
	return s
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s setupModel) setFocus(f setupField) setupModel {
	s.focus = f
	s.invInput.Blur()
	s.imgInput.Blur()
	switch f {
	case fieldInventory:
		s.invInput.Focus()
	case fieldImage:
		s.imgInput.Focus()
	}
	return s
}

// canComplete: the field does not name an image yet and one is highlighted.
func (s setupModel) canComplete() bool {
	if len(s.matches) == 0 {
		return false
	}
	_, exact := s.image()
	return !exact
}

func (s setupModel) complete() setupModel {
	if s.match < len(s.matches) {
		s.imgInput.SetValue(s.images[s.matches[s.match]].Ref)
	}
	s.match = 0
	return s.rematch()
}

// start checks the fields and asks the root to start the job.
func (s setupModel) start() (setupModel, tea.Cmd) {
	ref := strings.TrimSpace(s.imgInput.Value())
	_, known := s.image()
	unknown := ref != "" && !known && s.imgErr == nil && !s.imgLoading
	if unknown && s.pullAsked == ref {
		s.pullOK = ref
	}
	if unknown {
		s.pullAsked = ref
	}
	s.attempted = true
	s.startErr = ""
	if blocked(s.problems()) {
		return s, nil
	}
	opts, hosts := s.options()
	return s, send(startJobMsg{opts: opts, planned: hosts})
}

package tui

import (
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

func (r runModel) update(msg tea.KeyMsg, c *common, j *jobState) (runModel, tea.Cmd) {
	running := j.running()
	switch {
	case r.confirm:
		switch {
		case key.Matches(msg, r.keys.Yes):
			r.confirm = false
			return r, send(cancelJobMsg{})
		case key.Matches(msg, r.keys.No):
			r.confirm = false
		}
		return r, nil
	case r.filtering:
		return r.filterKey(msg, c, j), nil
	case key.Matches(msg, r.keys.Cancel):
		switch {
		case !running:
			return r, nil
		case j.cancelling:
			if r.leave && msg.Type == tea.KeyCtrlC {
				return r, send(quitMsg{})
			}
			r.leave = true
		default:
			r.confirm = true
		}
		return r, nil
	}
	k := c.keys
	page := max(r.tableRows(c)-1, 1)
	if key.Matches(msg, k.Up, k.Down, k.PageUp, k.PageDown, k.Home, k.End) {
		r.moved = true
	}
	switch {
	case key.Matches(msg, k.Up):
		return r.moveTo(c, r.cursor-1), nil
	case key.Matches(msg, k.Down):
		return r.moveTo(c, r.cursor+1), nil
	case key.Matches(msg, k.PageUp):
		r.offset = max(r.offset-page, 0)
		return r.moveTo(c, r.cursor-page), nil
	case key.Matches(msg, k.PageDown):
		r.offset += page
		return r.moveTo(c, r.cursor+page), nil
	case key.Matches(msg, k.Home):
		return r.moveTo(c, 0), nil
	case key.Matches(msg, k.End):
		return r.moveTo(c, len(r.rows)-1), nil
	case key.Matches(msg, r.keys.Detail):
		if r.selected != "" {
			return r, send(openDetailMsg{host: r.selected})
		}
	case key.Matches(msg, r.keys.Sort):
		r.sortBy = (r.sortBy + 1) % sortCount
		return r.refresh(c, j), nil
	case key.Matches(msg, r.keys.Logs):
		r.showLogs = !r.showLogs
		return r.moveTo(c, r.cursor), nil
	case key.Matches(msg, k.Filter):
		r.filtering = true
		r.filter.Focus()
	case key.Matches(msg, k.Back):
		r.filter.SetValue("")
		return r.refresh(c, j), nil
	}
	return r, nil
}

func (r runModel) filterKey(msg tea.KeyMsg, c *common, j *jobState) runModel {
	switch {
	case key.Matches(msg, c.keys.Back):
		r.filter.SetValue("")
		r.filtering = false
		r.filter.Blur()
		return r.refresh(c, j)
	case msg.Type == tea.KeyEnter:
		r.filtering = false
		r.filter.Blur()
		return r
	case msg.Type == tea.KeyUp:
		return r.moveTo(c, r.cursor-1)
	case msg.Type == tea.KeyDown:
		return r.moveTo(c, r.cursor+1)
	case msg.Type == tea.KeyCtrlC:
		r.filtering = false
		r.filter.Blur()
		r.confirm = j.running() && !j.cancelling
		return r
	}
	var edited bool
	if r.filter, edited = r.filter.update(msg); edited {
		r.cursor, r.offset = 0, 0
		r.selected = ""
		return r.refresh(c, j)
	}
	return r
}

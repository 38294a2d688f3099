package tui

import (
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

func (s summaryModel) update(msg tea.KeyMsg, c *common, j *jobState, canWrite bool) (summaryModel, tea.Cmd) {
	k := c.keys
	page := max(s.tableLines(c)/2, 1)
	switch {
	case key.Matches(msg, s.keys.Quit):
		return s, send(quitMsg{})
	case key.Matches(msg, s.keys.Retry):
		if len(j.failedHosts()) == 0 {
			s.status, s.statusBad = "no failed host to retry", false
			return s, nil
		}
		return s, send(retryFailedMsg{})
	case key.Matches(msg, s.keys.Write):
		switch {
		case !canWrite:
			s.status, s.statusBad = "writing reports is not available here", true
		case j.report == nil:
			s.status, s.statusBad = "the engine returned no report to write", true
		default:
			return s, send(writeReportMsg{})
		}
		return s, nil
	case key.Matches(msg, s.keys.Detail):
		if s.cursor < len(s.rows) {
			return s, send(openDetailMsg{host: s.rows[s.cursor].name})
		}
	case key.Matches(msg, s.keys.New):
		return s, send(newJobMsg{})
	case key.Matches(msg, k.Up):
		s.cursor--
	case key.Matches(msg, k.Down):
		s.cursor++
	case key.Matches(msg, k.PageUp):
		s.cursor -= page
	case key.Matches(msg, k.PageDown):
		s.cursor += page
	case key.Matches(msg, k.Home):
		s.cursor = 0
	case key.Matches(msg, k.End):
		s.cursor = len(s.rows) - 1
	}
	return s.scroll(c), nil
}

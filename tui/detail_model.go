package tui

import (
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
)

// detailModel is one host's detail: layers, log, error.
type detailModel struct {
	keys      detailKeys
	host      string
	logOffset int // log lines scrolled back from the newest
}

func newDetailModel() detailModel {
	return detailModel{keys: newDetailKeys()}
}

func (d detailModel) open(host string) detailModel {
	d.host = host
	d.logOffset = 0
	return d
}

func (d detailModel) update(msg tea.KeyMsg, c *common, j *jobState) (detailModel, tea.Cmd) {
	step := 1
	if msg.Type == tea.KeyPgUp || msg.Type == tea.KeyPgDown {
		step = max(c.height/2, 1)
	}
	switch {
	case msg.Type == tea.KeyCtrlC:
		// Leave the detail and let the screen below handle it (the run
		// screen asks whether to cancel the job).
		return d, tea.Sequence(send(closeDetailMsg{}), send(msg))
	case key.Matches(msg, d.keys.Close):
		return d, send(closeDetailMsg{})
	case key.Matches(msg, d.keys.Older):
		d.logOffset += step
	case key.Matches(msg, d.keys.Newer):
		d.logOffset -= step
	case key.Matches(msg, c.keys.End):
		d.logOffset = 0
	}
	if h := j.byName[d.host]; h != nil {
		d.logOffset = max(min(d.logOffset, len(h.logs)-1), 0)
	}
	return d, nil
}

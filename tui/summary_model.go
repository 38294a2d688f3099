package tui

import (
	"fmt"
	"slices"

	"github.com/layercast/layercast/orchestrator"
)

// summaryModel is the summary screen: the job's outcome per host.
type summaryModel struct {
	keys      summaryKeys
	rows      []*hostRow // failed first, then by name
	cursor    int
	offset    int
	status    string
	statusBad bool
	written   string // where the report went
}

func newSummaryModel() summaryModel {
	return summaryModel{keys: newSummaryKeys()}
}

// reset shows the outcome of job j.
func (s summaryModel) reset(c *common, j *jobState) summaryModel {
	s.rows = slices.Clone(j.hosts)
	slices.SortStableFunc(s.rows, func(a, b *hostRow) int {
		ra, rb := resultRank(a), resultRank(b)
		if ra != rb {
			return ra - rb
		}
		return compareNames(a.name, b.name)
	})
	s.cursor, s.offset = 0, 0
	s.status, s.statusBad, s.written = "", false, ""
	return s.scroll(c)
}

func resultRank(h *hostRow) int {
	switch h.state {
	case orchestrator.HostFailed:
		return 0
	case orchestrator.HostDone:
		return 2
	default:
		return 1
	}
}

func (s summaryModel) reportWritten(msg reportWrittenMsg) summaryModel {
	if msg.err != nil {
		s.status, s.statusBad = fmt.Sprintf("could not write the report: %v", msg.err), true
		return s
	}
	s.status, s.statusBad, s.written = "", false, msg.path
	return s
}

// rowLines is how many lines a host takes: failures add their reason.
func rowLines(h *hostRow) int {
	if h.state != orchestrator.HostDone && h.reason != "" {
		return 2
	}
	return 1
}

// Lines around the table: 4 header, 1 blank, 1 column header, 2 footer.
const summaryChromeLines = 8

func (s summaryModel) tableLines(c *common) int {
	return max(c.height-summaryChromeLines, 2)
}

// scroll keeps the cursor's row, with its reason line, on screen.
func (s summaryModel) scroll(c *common) summaryModel {
	s.cursor = max(min(s.cursor, len(s.rows)-1), 0)
	if s.cursor < s.offset {
		s.offset = s.cursor
	}
	avail := s.tableLines(c)
	for s.offset < s.cursor {
		used := 0
		for i := s.offset; i <= s.cursor; i++ {
			used += rowLines(s.rows[i])
		}
		if used <= avail {
			break
		}
		s.offset++
	}
	return s
}

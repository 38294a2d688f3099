package tui

import (
	"slices"
	"strings"

	"github.com/layercast/layercast/orchestrator"
)

// sortOrder is how the run screen orders its rows.
type sortOrder int

const (
	sortState sortOrder = iota
	sortProgress
	sortName
	sortCount
)

func (o sortOrder) String() string {
	switch o {
	case sortProgress:
		return "progress"
	case sortName:
		return "name"
	default:
		return "state"
	}
}

// runModel is the run screen's view state; the job itself is jobState.
type runModel struct {
	keys      runKeys
	sortBy    sortOrder
	filter    lineInput
	filtering bool
	rows      []*hostRow // the hosts shown, filtered and sorted
	rowsFrom  rowsKey    // what rows were filtered and sorted from
	cursor    int
	offset    int
	selected  string // the host under the cursor, kept across re-sorts
	moved     bool   // the operator moved the cursor: it follows its host
	confirm   bool   // asking whether to cancel the job
	leave     bool   // a second ctrl+c while tearing down leaves
	showLogs  bool
}

// rowsKey is what the run screen's rows were filtered and sorted from:
// the job, its generations, the sort and the filter. While it holds, the
// rows are what filtering and sorting again would give.
type rowsKey struct {
	job     *jobState
	rowsGen uint64
	progGen uint64 // only when sorting by progress
	sortBy  sortOrder
	filter  string
}

// keyFor is the key of rows filtered and sorted from j now.
func (r runModel) keyFor(j *jobState) rowsKey {
	k := rowsKey{job: j, rowsGen: j.rowsGen, sortBy: r.sortBy, filter: r.filter.Value()}
	if r.sortBy == sortProgress {
		k.progGen = j.progGen
	}
	return k
}

func newRunModel() runModel {
	return runModel{
		keys:     newRunKeys(),
		filter:   newLineInput("name, state, group or address"),
		showLogs: true,
	}
}

// reset prepares the screen for a new job, keeping the operator's sort and
// log pane choices.
func (r runModel) reset() runModel {
	r.rows, r.rowsFrom = nil, rowsKey{}
	r.cursor, r.offset = 0, 0
	r.selected, r.moved = "", false
	r.confirm, r.leave, r.filtering = false, false, false
	r.filter.SetValue("")
	r.filter.Blur()
	return r
}

// Lines around the table: 4 header, 1 blank, 1 column header, 2 footer.
const (
	runChromeLines = 8
	logPaneLines   = 3
)

func (r runModel) logsShown(c *common) bool {
	return r.showLogs && c.height >= 20
}

// tableRows is how many host rows fit.
func (r runModel) tableRows(c *common) int {
	n := c.height - runChromeLines
	if r.logsShown(c) {
		n -= logPaneLines + 1
	}
	return max(n, 1)
}

// refresh re-filters and re-sorts the rows from the job and keeps the
// cursor on the same host. It skips the filtering and sorting when nothing
// they read changed since the last time, such as after a batch of progress
// events while the rows are sorted by state: the order is then the same.
func (r runModel) refresh(c *common, j *jobState) runModel {
	if j == nil {
		return r
	}
	if key := r.keyFor(j); key != r.rowsFrom {
		r.rows = r.filterSort(j)
		r.rowsFrom = key
	}
	if r.moved && r.selected != "" {
		for i, h := range r.rows {
			if h.name == r.selected {
				r.cursor = i
				break
			}
		}
	}
	return r.moveTo(c, r.cursor)
}

// filterSort is the job's hosts that match the filter, in the screen's
// order. It reuses the backing array of the rows.
func (r runModel) filterSort(j *jobState) []*hostRow {
	q := strings.ToLower(strings.TrimSpace(r.filter.Value()))
	rows := r.rows[:0]
	for _, h := range j.hosts {
		if q == "" || strings.Contains(h.search, q) || strings.Contains(string(h.state), q) {
			rows = append(rows, h)
		}
	}
	size := j.info.Size
	switch r.sortBy {
	case sortState:
		slices.SortStableFunc(rows, func(a, b *hostRow) int {
			if d := stateRank(a.state) - stateRank(b.state); d != 0 {
				return d
			}
			return compareNames(a.name, b.name)
		})
	case sortProgress:
		slices.SortStableFunc(rows, func(a, b *hostRow) int {
			fa, fb := a.fraction(size), b.fraction(size)
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			return compareNames(a.name, b.name)
		})
	case sortName:
		slices.SortStableFunc(rows, func(a, b *hostRow) int { return compareNames(a.name, b.name) })
	}
	return rows
}

func compareNames(a, b string) int {
	switch {
	case a == b:
		return 0
	case naturalLess(a, b):
		return -1
	default:
		return 1
	}
}

// moveTo puts the cursor on row i and scrolls just enough to show it.
func (r runModel) moveTo(c *common, i int) runModel {
	r.cursor = max(min(i, len(r.rows)-1), 0)
	if len(r.rows) > 0 {
		r.selected = r.rows[r.cursor].name
	}
	r.offset = scrollTo(r.cursor, r.offset, r.tableRows(c), len(r.rows))
	return r
}

// active: the host is working on the job, so a rate and peers mean something.
func active(h *hostRow) bool {
	return !h.state.Terminal() && h.state != orchestrator.HostPending
}

package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

// runCols are the widths of the run table's columns.
type runCols struct {
	name, state, bar, pct, bytes, rate, peers, share, time int
}

// Fixed cells of a row besides name and bar: marker, gaps and the
// other columns.
const runFixedCells = 2 + 1 + 11 + 1 + 1 + 4 + 1 + 11 + 1 + 9 + 1 + 5 + 1 + 4 + 1 + 6

func runColumns(width, longestName int) runCols {
	c := runCols{state: 11, pct: 4, bytes: 11, rate: 9, peers: 5, share: 4, time: 6}
	room := width - runFixedCells
	c.name = max(min(longestName, room-8, 24), 4)
	c.bar = max(min(room-c.name, 40), 4)
	return c
}

// teardownWidth replaces the rate and peers columns while tearing down.
func (k runCols) teardownWidth() int { return k.rate + 1 + k.peers }

func (r runModel) view(c *common, j *jobState) string {
	now := c.now()
	lines := r.header(c, j, now)
	lines = append(lines, "")

	cols := runColumns(c.width, j.longest)
	tearing := j.cancelling
	lines = append(lines, r.columnHeader(c, cols, tearing))

	rows := r.tableRows(c)
	end := min(r.offset+rows, len(r.rows))
	for i := r.offset; i < end; i++ {
		lines = append(lines, r.row(c, j, cols, r.rows[i], i == r.cursor, tearing, now))
	}
	if len(r.rows) == 0 {
		msg := "waiting for the engine to name the job's hosts…"
		if r.filter.Value() != "" {
			msg = "no host matches the filter — esc clears it"
		}
		lines = append(lines, "  "+c.styles.faint.Render(msg))
	}
	for len(lines) < 6+rows {
		lines = append(lines, "")
	}

	if r.logsShown(c) {
		lines = append(lines, c.styles.faint.Render(ruleLine("log", c.width)))
		lines = append(lines, logPane(c, j.logs, logPaneLines)...)
	}
	lines = append(lines, r.status(c, j))
	lines = append(lines, r.footer(c, j))
	return strings.Join(lines, "\n")
}

// ruleLine is "── title ─────" across width.
func ruleLine(title string, width int) string {
	head := "── " + title + " "
	return head + strings.Repeat("─", max(width-ansi.StringWidth(head), 0))
}

// logPane renders the last n lines of logs, oldest first.
func logPane(c *common, logs []logLine, n int) []string {
	st := c.styles
	out := make([]string, 0, n)
	start := max(len(logs)-n, 0)
	for _, l := range logs[start:] {
		who := "·"
		if l.host != "" {
			who = l.host
		}
		line := st.faint.Render(l.t.Format("15:04:05")) + " " + st.subtle.Render(fit(who, 10)) + " " + textfmt.OneLine(l.msg)
		out = append(out, line)
	}
	for len(out) < n {
		out = append(out, "")
	}
	return out
}

func (r runModel) header(c *common, j *jobState, now time.Time) []string {
	st := c.styles
	image := j.info.Image
	if image == "" {
		image = j.opts.Image
	}
	title := st.title.Render("layercast") + "  " + st.value.Render(image)
	var facts []string
	if j.info.Size > 0 {
		facts = append(facts, textfmt.Bytes(j.info.Size))
	}
	if n := len(j.info.Layers); n > 0 {
		facts = append(facts, plural(n, "layer", "layers"))
	}
	mode := j.info.Mode
	if mode == "" {
		mode = string(j.opts.Mode)
	}
	facts = append(facts, mode)
	if j.info.ID != "" {
		facts = append(facts, "job "+j.info.ID)
	}
	title += st.subtle.Render(" · " + strings.Join(facts, " · "))
	var right string
	switch {
	case j.cancelling:
		right = st.confirm.Render("cancelling")
	case j.step != "":
		right = st.subtle.Render("▸ " + j.step)
	case !j.began:
		right = st.faint.Render("starting…")
	}
	line1 := spread(title, right, c.width)

	// Overall progress.
	f := fraction(j.doneBytes, j.allBytes)
	etaText := "ETA –"
	if d, ok := j.eta(); ok {
		etaText = "ETA " + formatDuration(d)
	}
	tail := fmt.Sprintf(" %4s  %s  %s", formatPercent(f), textfmt.Ratio(j.doneBytes, j.allBytes), etaText)
	fill := st.barFull
	if j.finished || (j.counts[orchestrator.HostDone] > 0 && j.counts[orchestrator.HostDone] == len(j.hosts)) {
		fill = st.barDone
	}
	line2 := bar(st, max(c.width-ansi.StringWidth(tail), 10), f, fill) + st.value.Render(tail)

	// Throughput, bastion egress, elapsed.
	egress := "bastion sent " + textfmt.Bytes(j.seeder.Uploaded)
	if j.info.Size > 0 && j.seeder.Uploaded*10 >= j.info.Size {
		egress += fmt.Sprintf(" (%.1f× image)", float64(j.seeder.Uploaded)/float64(j.info.Size))
	}
	egress += " at " + textfmt.Rate(j.seeder.Rate)
	line3 := st.subtle.Render("throughput ") + st.value.Render(textfmt.Rate(j.rate)) +
		st.faint.Render(" · ") + st.subtle.Render(egress) +
		st.faint.Render(" · ") + st.subtle.Render("elapsed ") + st.value.Render(formatDuration(j.elapsed(now)))

	return []string{line1, line2, line3, stateCounts(c, j)}
}

// stateCounts reads "2 connecting · 3 downloading · 1 done · 1 failed".
func stateCounts(c *common, j *jobState) string {
	st := c.styles
	order := []orchestrator.HostState{
		orchestrator.HostPending, orchestrator.HostConnecting, orchestrator.HostUploading,
		orchestrator.HostChecking, orchestrator.HostDownloading, orchestrator.HostImporting,
		orchestrator.HostDone, orchestrator.HostFailed, orchestrator.HostCancelled,
	}
	var parts []string
	for _, s := range order {
		if n := j.counts[s]; n > 0 {
			parts = append(parts, st.state(s).Render(fmt.Sprintf("%d %s", n, stateLabel(s))))
		}
	}
	out := strings.Join(parts, st.faint.Render(" · "))
	if j.cancelling {
		out = st.confirm.Render(fmt.Sprintf("teardown %d/%d hosts", j.tornDown, len(j.hosts))) + st.faint.Render(" · ") + out
	}
	return out
}

// spread puts left and right on one line of width cells.
func spread(left, right string, width int) string {
	gap := width - ansi.StringWidth(left) - ansi.StringWidth(right)
	if gap < 1 {
		return left
	}
	return left + strings.Repeat(" ", gap) + right
}

func (r runModel) columnHeader(c *common, k runCols, tearing bool) string {
	h := "  " + fit("HOST", k.name) + " " + fit("STATE", k.state) + " " + fit("PROGRESS", k.bar+1+k.pct) + " " +
		fitRight("BYTES", k.bytes) + " "
	if tearing {
		h += fit("TEARDOWN", k.teardownWidth())
	} else {
		h += fitRight("RATE", k.rate) + " " + fitRight("PEERS", k.peers)
	}
	h += " " + fitRight("P2P", k.share) + " " + fitRight("TIME", k.time)
	return c.styles.header.Render(h)
}

func (r runModel) row(c *common, j *jobState, k runCols, h *hostRow, current, tearing bool, now time.Time) string {
	st := c.styles
	mark := "  "
	name := fit(h.name, k.name)
	if current {
		mark = st.focused.Render("▸ ")
		name = st.cursor.Render(name)
	}
	out := mark + name + " " + st.state(h.state).Render(fit(stateLabel(h.state), k.state)) + " "

	if h.state == orchestrator.HostFailed && !tearing {
		// The reason says more than an empty bar.
		w := k.bar + 1 + k.pct + 1 + k.bytes + 1 + k.rate + 1 + k.peers + 1 + k.share
		out += st.bad.Render(fit(textfmt.OneLine(h.reason), w))
		return out + " " + st.subtle.Render(fitRight(formatDuration(h.elapsed(now)), k.time))
	}

	size := j.info.Size
	f := h.fraction(size)
	fill := st.barFull
	switch h.state {
	case orchestrator.HostDone:
		fill = st.barDone
	case orchestrator.HostFailed, orchestrator.HostCancelled:
		fill = st.barFail
	}
	out += bar(st, k.bar, f, fill) + " " + fitRight(formatPercent(f), k.pct) + " "
	bytes := "–"
	if total := h.total(size); total > 0 {
		bytes = textfmt.Ratio(h.done(size), total)
	}
	out += st.subtle.Render(fitRight(bytes, k.bytes)) + " "
	if tearing {
		td := st.faint.Render(fit("… pending", k.teardownWidth()))
		if h.tornDown {
			td = st.ok.Render(fit("✓ finished", k.teardownWidth()))
		}
		out += td
	} else {
		rate, peers := "–", "–"
		if active(h) && h.hasProg {
			rate = textfmt.Rate(h.prog.Rate)
			peers = fmt.Sprint(h.prog.Peers)
		}
		out += fitRight(rate, k.rate) + " " + st.subtle.Render(fitRight(peers, k.peers))
	}
	share := "–"
	if f, ok := h.peerShare(); ok {
		share = formatPercent(f)
	}
	out += " " + st.subtle.Render(fitRight(share, k.share))
	out += " " + st.subtle.Render(fitRight(formatDuration(h.elapsed(now)), k.time))
	return out
}

func (r runModel) status(c *common, j *jobState) string {
	st := c.styles
	parts := []string{"sort " + r.sortBy.String()}
	switch {
	case r.filtering:
		return " " + st.focused.Render("/") + r.filter.view(st) + st.faint.Render(fmt.Sprintf("  %d of %d hosts", len(r.rows), len(j.hosts)))
	case r.filter.Value() != "":
		parts = append(parts, fmt.Sprintf("filter %q", r.filter.Value()))
	}
	if n := len(r.rows); n > 0 {
		last := min(r.offset+r.tableRows(c), n)
		parts = append(parts, fmt.Sprintf("rows %d–%d of %d", r.offset+1, last, n))
	}
	return " " + st.faint.Render(strings.Join(parts, " · "))
}

func (r runModel) footer(c *common, j *jobState) string {
	st := c.styles
	switch {
	case r.confirm:
		q := fmt.Sprintf("Cancel the job? Every node stops and its files are removed on %s.",
			plural(len(j.hosts), "host", "hosts"))
		return " " + st.confirm.Render(q) + "  " + helpLine(st, c.width, r.keys.Yes, r.keys.No)
	case j.cancelling && r.leave:
		return " " + st.confirm.Render("Tearing down — press ctrl+c again to leave now; hosts may keep job files.")
	case j.cancelling:
		return " " + st.confirm.Render("Tearing down the job…") + "  " + st.faint.Render("the summary follows when every host is done")
	}
	k := c.keys
	return " " + helpLine(st, c.width-1, k.Up, r.keys.Detail, r.keys.Sort, k.Filter, r.keys.Logs, r.keys.Cancel,
		key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgup/pgdn", "page")))
}

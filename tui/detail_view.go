package tui

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

func (d detailModel) view(c *common, j *jobState) string {
	st := c.styles
	h := j.byName[d.host]
	if h == nil {
		return st.faint.Render("no such host")
	}
	now := c.now()
	size := j.info.Size

	title := spread(st.title.Render("layercast")+"  "+st.value.Render("host "+h.name),
		st.faint.Render("esc back"), c.width)
	facts := []string{st.state(h.state).Render(stateLabel(h.state))}
	f := h.fraction(size)
	if total := h.total(size); total > 0 {
		facts = append(facts, formatPercent(f)+" of "+textfmt.Bytes(total))
	}
	if active(h) && h.hasProg {
		facts = append(facts, textfmt.Rate(h.prog.Rate), plural(h.prog.Peers, "peer", "peers"))
	}
	facts = append(facts, "elapsed "+formatDuration(h.elapsed(now)))
	if h.tornDown {
		facts = append(facts, st.ok.Render("teardown finished"))
	}
	lines := []string{title, strings.Join(facts, st.faint.Render(" · "))}
	if got := h.prog.FromPeers + h.prog.FromSeeder; got > 0 || h.prog.Uploaded > 0 {
		share, _ := h.peerShare()
		lines = append(lines, st.subtle.Render(fmt.Sprintf("received %s: %s from peers, %s from the bastion · sent %s to peers",
			textfmt.Bytes(got), formatPercent(share), textfmt.Bytes(h.prog.FromSeeder), textfmt.Bytes(h.prog.Uploaded))))
	}
	if i := h.info; i != nil {
		rt := "runtime " + i.Runtime
		if i.Namespace != "" {
			rt += " (namespace " + i.Namespace + ")"
		}
		lines = append(lines, st.subtle.Render(rt+" · "+i.Arch))
	}
	if h.inv != nil {
		where := []string{h.inv.Address}
		if len(h.inv.Groups) > 0 {
			where = append(where, "groups "+strings.Join(h.inv.Groups, ","))
		}
		if len(h.inv.Labels) > 0 {
			where = append(where, labelsText(h.inv.Labels))
		}
		lines = append(lines, st.subtle.Render(strings.Join(where, " · ")))
	}
	lines = append(lines, "")

	// Budget the height: error first (it is why one opens a failed host),
	// then layers, then the log gets the rest.
	var errLines []string
	if h.reason != "" {
		errLines = strings.Split(ansi.Wrap(textfmt.OneLine(h.reason), max(c.width-4, 10), " "), "\n")
		errLines = errLines[:min(len(errLines), max(c.height/3, 3))]
	}
	layers := detailLayers(h, j)
	fixed := len(lines) + 1 /* layers title */ + 1 /* blank */ + 1 /* log title */ + 1 /* footer */
	if len(errLines) > 0 {
		fixed += 1 + len(errLines) + 1
	}
	const minLog = 3
	layerRows := max(min(len(layers), c.height-fixed-minLog), 1)

	// Layers.
	skipped, skippedBytes := 0, int64(0)
	for _, l := range layers {
		if l.Skipped {
			skipped++
			skippedBytes += l.Total
		}
	}
	head := st.header.Render("LAYERS") + "  " + st.subtle.Render(plural(len(layers), "layer", "layers"))
	if skipped > 0 {
		head += st.subtle.Render(fmt.Sprintf(" · %d skipped (%s already on the host)", skipped, textfmt.Bytes(skippedBytes)))
	}
	lines = append(lines, head)
	if len(layers) == 0 {
		lines = append(lines, "  "+st.faint.Render("no layer information yet"))
	}
	barW := max(min(c.width-2-12-2-1-4-2-11, 40), 6)
	for i, l := range layers {
		if i == layerRows-1 && len(layers) > layerRows {
			lines = append(lines, "  "+st.faint.Render(fmt.Sprintf("+%d more layers", len(layers)-i)))
			break
		}
		line := "  " + st.subtle.Render(fit(shortDigest(l.Digest), 12)) + "  "
		if l.Skipped {
			line += st.faint.Render(fit("skipped — already on the host", barW+1+4)) + "  " +
				st.faint.Render(fitRight(textfmt.Bytes(l.Total), 11))
		} else {
			lf := fraction(l.Done, l.Total)
			fill := st.barFull
			if l.Total > 0 && l.Done >= l.Total {
				fill = st.barDone
			}
			line += bar(st, barW, lf, fill) + " " + fitRight(formatPercent(lf), 4) + "  " +
				st.subtle.Render(fitRight(textfmt.Ratio(l.Done, l.Total), 11))
		}
		lines = append(lines, line)
	}
	lines = append(lines, "")

	if len(errLines) > 0 {
		lines = append(lines, st.bad.Render("ERROR"))
		for _, l := range errLines {
			lines = append(lines, "  "+st.bad.Render(l))
		}
		lines = append(lines, "")
	}

	// Log: the newest lines that fit, scrolled back by logOffset.
	logRows := max(c.height-len(lines)-2, 1)
	end := max(len(h.logs)-d.logOffset, 0)
	start := max(end-logRows, 0)
	logHead := st.header.Render("LOG")
	if d.logOffset > 0 {
		logHead += st.faint.Render(fmt.Sprintf("  scrolled back %d lines · end returns", d.logOffset))
	}
	lines = append(lines, logHead)
	if len(h.logs) == 0 {
		lines = append(lines, "  "+st.faint.Render("nothing logged yet"))
	}
	for _, l := range h.logs[start:end] {
		lines = append(lines, "  "+st.faint.Render(l.t.Format("15:04:05"))+" "+textfmt.OneLine(l.msg))
	}
	for len(lines) < c.height-1 {
		lines = append(lines, "")
	}
	lines = append(lines, " "+helpLine(st, c.width-1, d.keys.Close, d.keys.Older, d.keys.Newer))
	return strings.Join(lines, "\n")
}

// detailLayers are the host's layers, or the job's before it reported any.
func detailLayers(h *hostRow, j *jobState) []orchestrator.LayerProgress {
	if h.hasProg && len(h.prog.Layers) > 0 {
		return h.prog.Layers
	}
	out := make([]orchestrator.LayerProgress, len(j.info.Layers))
	for i, l := range j.info.Layers {
		out[i] = orchestrator.LayerProgress{Digest: l.Digest, Total: l.Size}
	}
	return out
}

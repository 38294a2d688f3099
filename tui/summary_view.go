package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

// sumCols are the widths of the results table.
type sumCols struct{ name, result, time, peers, bastion, skipped, teardown int }

func summaryColumns(width, longest int) sumCols {
	k := sumCols{result: 11, time: 7, peers: 10, bastion: 12, skipped: 7, teardown: 8}
	fixed := 2 + 1 + k.result + 1 + k.time + 1 + k.peers + 1 + k.bastion + 1 + k.skipped + 1 + k.teardown
	k.name = max(min(longest, width-fixed, 24), 4)
	return k
}

// hostOutcome is a host's line of the results, from the report when there is one.
type hostOutcome struct {
	state      orchestrator.HostState
	fromPeers  int64
	fromSeeder int64
	skipped    int
}

func outcome(h *hostRow) hostOutcome {
	if r := h.result; r != nil {
		return hostOutcome{state: r.State, fromPeers: r.FromPeers, fromSeeder: r.FromSeeder, skipped: r.LayersSkipped}
	}
	o := hostOutcome{state: h.state, fromPeers: h.prog.FromPeers, fromSeeder: h.prog.FromSeeder}
	for _, l := range h.prog.Layers {
		if l.Skipped {
			o.skipped++
		}
	}
	return o
}

func (s summaryModel) view(c *common, j *jobState, canWrite bool, logPath string) string {
	st := c.styles
	now := c.now()
	lines := s.header(c, j)
	lines = append(lines, "")

	longest := 4
	for _, h := range s.rows {
		longest = max(longest, ansi.StringWidth(h.name))
	}
	k := summaryColumns(c.width, longest)
	lines = append(lines, st.header.Render("  "+fit("HOST", k.name)+" "+fit("RESULT", k.result)+" "+
		fitRight("TIME", k.time)+" "+fitRight("FROM PEERS", k.peers)+" "+fitRight("FROM BASTION", k.bastion)+" "+
		fitRight("SKIPPED", k.skipped)+" "+fit("TEARDOWN", k.teardown)))

	avail := s.tableLines(c)
	used := 0
	for i := s.offset; i < len(s.rows) && used < avail; i++ {
		h := s.rows[i]
		o := outcome(h)
		mark, name := "  ", fit(h.name, k.name)
		if i == s.cursor {
			mark, name = st.focused.Render("▸ "), st.cursor.Render(name)
		}
		td := st.faint.Render(fit("–", k.teardown))
		if h.tornDown {
			td = st.ok.Render(fit("✓", k.teardown))
		}
		lines = append(lines, mark+name+" "+st.state(o.state).Render(fit(stateLabel(o.state), k.result))+" "+
			st.subtle.Render(fitRight(formatDuration(h.elapsed(now)), k.time))+" "+
			fitRight(textfmt.Bytes(o.fromPeers), k.peers)+" "+fitRight(textfmt.Bytes(o.fromSeeder), k.bastion)+" "+
			fitRight(fmt.Sprint(o.skipped), k.skipped)+" "+td)
		used++
		if rowLines(h) == 2 && used < avail {
			lines = append(lines, "    "+st.bad.Render(fit("└ "+textfmt.OneLine(h.reason), c.width-4)))
			used++
		}
	}
	for ; used < avail; used++ {
		lines = append(lines, "")
	}

	// Status: what happened to the report, where the log is.
	status := s.status
	switch {
	case status != "" && s.statusBad:
		status = st.bad.Render(status)
	case status != "":
		status = st.ok.Render(status)
	case s.written != "":
		// A long path keeps its end: the file name matters most.
		head := "✓ report written to "
		path := s.written
		if over := ansi.StringWidth(head+path) - (c.width - 2); over > 0 {
			path = ansi.TruncateLeft(path, over+1, "…")
		}
		status = st.ok.Render(head + path)
	case canWrite && j.report != nil:
		status = st.faint.Render("report not written yet — w writes it")
	}
	if logPath != "" {
		status = spread(status, st.faint.Render("log "+logPath), c.width-1)
	}
	lines = append(lines, " "+status)

	retry := s.keys.Retry
	if n := len(j.failedHosts()); n > 0 {
		what := plural(n, "failed host", "failed hosts")
		if n != j.counts[orchestrator.HostFailed] {
			what = plural(n, "host not done", "hosts not done")
		}
		retry.SetHelp("r", "retry "+what)
	} else {
		retry.SetEnabled(false)
	}
	write := s.keys.Write
	write.SetEnabled(canWrite && j.report != nil)
	lines = append(lines, " "+helpLine(st, c.width-1, retry, write, s.keys.Detail, s.keys.New, s.keys.Quit,
		key.NewBinding(key.WithKeys("up"), key.WithHelp("↑/↓", "move"))))
	return strings.Join(lines, "\n")
}

func (s summaryModel) header(c *common, j *jobState) []string {
	st := c.styles
	image := j.info.Image
	if image == "" {
		image = j.opts.Image
	}
	var facts []string
	if j.info.ID != "" {
		facts = append(facts, "job "+j.info.ID)
	}
	if j.info.Size > 0 {
		facts = append(facts, fmt.Sprintf("%s (%s, %s)", image, textfmt.Bytes(j.info.Size), plural(len(j.info.Layers), "layer", "layers")))
	} else {
		facts = append(facts, image)
	}
	if j.info.Mode != "" {
		facts = append(facts, j.info.Mode)
	}
	cancelled := j.cancelling || (j.report != nil && j.report.Cancelled)
	took := j.elapsed(c.now())
	if j.report != nil && j.report.Duration > 0 {
		took = j.report.Duration
	}
	when := st.subtle.Render("finished in " + formatDuration(took))
	if cancelled {
		when = st.confirm.Render("cancelled after " + formatDuration(took))
	}
	line1 := spread(st.title.Render("layercast")+"  "+st.subtle.Render(strings.Join(facts, " · ")), when, c.width)

	// Verdict.
	counts := map[orchestrator.HostState]int{}
	var peers, seeder int64
	for _, h := range j.hosts {
		o := outcome(h)
		counts[o.state]++
		peers += o.fromPeers
		seeder += o.fromSeeder
	}
	n := len(j.hosts)
	var verdict string
	switch {
	case n > 0 && counts[orchestrator.HostDone] == n:
		verdict = st.ok.Render(fmt.Sprintf("✓ all %s have the image", plural(n, "host", "hosts")))
	default:
		var parts []string
		if f := counts[orchestrator.HostFailed]; f > 0 {
			parts = append(parts, st.bad.Render(fmt.Sprintf("✗ %d of %d failed", f, n)))
		}
		if d := counts[orchestrator.HostDone]; d > 0 {
			parts = append(parts, st.ok.Render(fmt.Sprintf("%d done", d)))
		}
		if x := n - counts[orchestrator.HostDone] - counts[orchestrator.HostFailed]; x > 0 {
			parts = append(parts, st.warn.Render(fmt.Sprintf("%d cancelled or unfinished", x)))
		}
		verdict = strings.Join(parts, st.faint.Render(" · "))
	}

	egress := j.seeder.Uploaded
	if j.report != nil && j.report.Egress > 0 {
		egress = j.report.Egress
	}
	traffic := "bastion sent " + textfmt.Bytes(egress)
	if j.info.Size > 0 && egress*10 >= j.info.Size {
		traffic += fmt.Sprintf(" (%.1f× image)", float64(egress)/float64(j.info.Size))
	}
	if got := peers + seeder; got > 0 {
		traffic += fmt.Sprintf(" · hosts got %s, %s from peers", textfmt.Bytes(got), formatPercent(float64(peers)/float64(got)))
	}
	lines := []string{line1, verdict, st.subtle.Render(traffic)}
	switch {
	case j.err != nil && !errors.Is(j.err, context.Canceled):
		lines = append(lines, st.bad.Render("engine: "+textfmt.OneLine(j.err.Error())))
	case cancelled:
		off := "bastion teardown pending"
		if j.bastionOff {
			off = "tracker and seeder stopped"
		}
		lines = append(lines, st.subtle.Render(fmt.Sprintf("teardown finished on %d of %d hosts · %s", j.tornDown, n, off)))
	case j.report != nil && j.report.Unverified != "":
		lines = append(lines, st.warn.Render(fit("⚠ not verified: "+textfmt.OneLine(j.report.Unverified), c.width)))
	default:
		lines = append(lines, "")
	}
	return lines
}

package tui

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/internal/byterate"
	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

// labelWidth is the width of the label column: marker, label, gap.
const labelWidth = 14

const maxProblemLines = 4

func (s setupModel) label(c *common, f setupField, text string) string {
	if s.focus == f {
		return c.styles.focused.Render("▸ " + fit(text, labelWidth-2))
	}
	return "  " + c.styles.label.Render(fit(text, labelWidth-2))
}

// inlineLabel is a label inside a line, for the option fields.
func (s setupModel) inlineLabel(c *common, f setupField, text string) string {
	if s.focus == f {
		return c.styles.focused.Render("▸" + text + " ")
	}
	return " " + c.styles.label.Render(text) + " "
}

// choices renders options with the current one bracketed, so it reads
// without colour too; every option keeps its width when it changes.
func choices[T comparable](c *common, opts []T, cur T, name func(T) string) string {
	var b strings.Builder
	for _, o := range opts {
		if o == cur {
			b.WriteString(c.styles.selected.Render("[" + name(o) + "]"))
		} else {
			b.WriteString(c.styles.subtle.Render(" " + name(o) + " "))
		}
	}
	return b.String()
}

func rateName(bps int64) string {
	if bps == 0 {
		return "none"
	}
	return byterate.Format(bps)
}

func concurrencyName(n int) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (s setupModel) completionLines() int {
	if s.focus != fieldImage {
		return 0
	}
	if _, exact := s.image(); exact && len(s.matches) == 1 {
		return 0 // nothing left to choose
	}
	return min(len(s.matches), maxCompletions)
}

// problemLines renders the problems wrapped to the width, at most
// maxProblemLines lines.
func (s setupModel) problemLines(c *common) []string {
	var out []string
	for _, p := range s.problems() {
		st, mark := c.styles.warn, "! "
		if p.block {
			st, mark = c.styles.bad, "✗ "
		}
		wrapped := strings.Split(ansi.Wrap(p.text, max(c.width-4, 10), " "), "\n")
		for i, l := range wrapped {
			prefix := "  "
			if i == 0 {
				prefix = mark
			}
			out = append(out, "  "+st.Render(prefix+l))
		}
	}
	if len(out) > maxProblemLines {
		out = out[:maxProblemLines]
	}
	return out
}

// hostRows is how many host lines fit.
func (s setupModel) hostRows(c *common) int {
	fixed := 11 + s.completionLines() + len(s.problemLines(c))
	return max(c.height-fixed, 3)
}

// scrolled keeps the cursor row on screen.
func (s setupModel) scrolled(c *common) setupModel {
	s.offset = scrollTo(s.cursor, s.offset, s.hostRows(c), len(s.visible))
	return s
}

func (s setupModel) view(c *common) string {
	st := c.styles
	s = s.scrolled(c)
	lines := []string{
		st.title.Render("layercast") + st.subtle.Render("  new job"),
		"",
	}
	inputWidth := s.invInput.width + 1

	// Inventory.
	var invInfo string
	switch {
	case s.invLoading:
		invInfo = st.faint.Render("loading…")
	case s.invErr != nil:
		invInfo = st.bad.Render("✗ cannot load")
	default:
		invInfo = st.subtle.Render(plural(len(s.inv.Hosts), "host", "hosts") + " · " + plural(len(s.inv.Groups), "group", "groups"))
	}
	lines = append(lines, s.label(c, fieldInventory, "Inventory")+fit(s.invInput.view(st), inputWidth)+"  "+invInfo)

	// Image and its completions.
	ref := strings.TrimSpace(s.imgInput.Value())
	im, known := s.image()
	var imgInfo string
	switch {
	case known:
		imgInfo = st.subtle.Render(textfmt.Bytes(im.Size) + " · " + plural(im.Layers, "layer", "layers"))
	case s.imgLoading:
		imgInfo = st.faint.Render("listing images…")
	case s.imgErr != nil:
		imgInfo = st.warn.Render("! image list unavailable")
	case ref != "":
		imgInfo = st.warn.Render("! not on the bastion")
	default:
		imgInfo = st.faint.Render(plural(len(s.images), "local image", "local images"))
	}
	lines = append(lines, s.label(c, fieldImage, "Image")+fit(s.imgInput.view(st), inputWidth)+"  "+imgInfo)
	for k := 0; k < s.completionLines(); k++ {
		cand := s.images[s.matches[k]]
		mark, name := "  ", st.subtle.Render(fit(cand.Ref, inputWidth-2))
		if k == s.match {
			mark, name = st.focused.Render("▸ "), st.value.Render(fit(cand.Ref, inputWidth-2))
		}
		lines = append(lines, strings.Repeat(" ", labelWidth)+mark+name+"  "+
			st.faint.Render(fitRight(textfmt.Bytes(cand.Size), 8)+"  "+plural(cand.Layers, "layer", "layers")))
	}

	// Options.
	lines = append(lines, s.label(c, fieldMode, "Mode")+
		choices(c, modeChoices(), s.mode, func(m orchestrator.Mode) string { return string(m) })+"  "+
		s.inlineLabel(c, fieldTunnel, "Tunnel")+
		choices(c, []bool{false, true}, s.tunnel, func(b bool) string { return map[bool]string{false: "off", true: "on"}[b] })+"  "+
		s.inlineLabel(c, fieldConcurrency, "Concurrency")+
		choices(c, []int{s.concurrency}, s.concurrency, concurrencyName))
	lines = append(lines, s.label(c, fieldSource, "Source")+
		choices(c, sourceChoices(), s.source, func(m orchestrator.Source) string { return string(m) })+"  "+
		s.inlineLabel(c, fieldMaxRate, "Max rate")+
		choices(c, []int64{s.maxRate}, s.maxRate, rateName)+"  "+
		s.inlineLabel(c, fieldHostRate, "Per host")+
		choices(c, []int64{s.hostRate}, s.hostRate, rateName))
	lines = append(lines, "")

	// Hosts.
	lines = append(lines, s.label(c, fieldHosts, "Hosts")+s.hostsInfo(c))
	rows := s.hostRows(c)
	lines = append(lines, s.hostLines(c, rows)...)
	lines = append(lines, "")

	lines = append(lines, s.problemLines(c)...)
	lines = append(lines, s.summaryLine(c))
	lines = append(lines, s.help(c))
	return strings.Join(lines, "\n")
}

func (s setupModel) hostsInfo(c *common) string {
	st := c.styles
	n := len(s.selectedHosts())
	info := fmt.Sprintf("%d of %d selected", n, len(s.inv.Hosts))
	if s.group != "" {
		info += " · group " + s.group
	}
	out := st.subtle.Render(info)
	switch {
	case s.filtering:
		out += "  " + st.focused.Render("/") + s.filter.view(st)
	case s.filter.Value() != "":
		out += "  " + st.subtle.Render(fmt.Sprintf("· filter %q: %d shown", s.filter.Value(), len(s.visible)))
	}
	return out
}

func (s setupModel) hostLines(c *common, rows int) []string {
	st := c.styles
	out := make([]string, 0, rows)
	if len(s.visible) == 0 {
		msg := "no hosts"
		switch {
		case s.invLoading:
			msg = "loading the inventory…"
		case s.filter.Value() != "":
			msg = "no host matches the filter — esc clears it"
		}
		out = append(out, strings.Repeat(" ", labelWidth)+st.faint.Render(msg))
	}
	nameW, addrW, groupW := 4, 0, 0
	for _, h := range s.inv.Hosts {
		nameW = max(nameW, ansi.StringWidth(h.Name))
		addrW = max(addrW, ansi.StringWidth(h.Address))
		groupW = max(groupW, ansi.StringWidth(strings.Join(h.Groups, ",")))
	}
	nameW, addrW, groupW = min(nameW, 20), min(addrW, 21), min(groupW, 20)
	end := min(s.offset+rows, len(s.visible))
	for k := s.offset; k < end; k++ {
		h := s.inv.Hosts[s.visible[k]]
		mark := "  "
		if k == s.cursor && s.focus == fieldHosts {
			mark = st.focused.Render("▸ ")
		}
		box := st.faint.Render("[ ]")
		if s.selected[h.Name] {
			box = st.ok.Render("[x]")
		}
		name := fit(h.Name, nameW)
		if k == s.cursor && s.focus == fieldHosts {
			name = st.cursor.Render(name)
		}
		line := "  " + mark + box + " " + name + "  " +
			st.subtle.Render(fit(h.Address, addrW)) + "  " +
			st.subtle.Render(fit(strings.Join(h.Groups, ","), groupW)) + "  " +
			st.faint.Render(labelsText(h.Labels))
		out = append(out, line)
	}
	for len(out) < rows {
		out = append(out, "")
	}
	return out
}

// labelsText prints labels sorted by key: "rack=r1 role=web".
func labelsText(labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + labels[k]
	}
	return strings.Join(parts, " ")
}

// summaryLine reads "N hosts · image X (size, layers)".
func (s setupModel) summaryLine(c *common) string {
	st := c.styles
	n := len(s.selectedHosts())
	ref := strings.TrimSpace(s.imgInput.Value())
	text := plural(n, "host", "hosts") + " · "
	im, known := s.image()
	switch {
	case ref == "":
		text += "no image yet"
	case known:
		text += fmt.Sprintf("image %s (%s, %s)", ref, textfmt.Bytes(im.Size), plural(im.Layers, "layer", "layers"))
	default:
		text += fmt.Sprintf("image %s (not on the bastion)", ref)
	}
	ready := n > 0 && ref != "" && s.invErr == nil && !s.invLoading
	if ready {
		return st.ok.Render("▶ ") + st.value.Render(text) + st.faint.Render("   enter starts")
	}
	return st.faint.Render("▷ " + text)
}

func (s setupModel) help(c *common) string {
	k, sk := c.keys, s.keys
	quit := key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "quit"))
	var bs []key.Binding
	switch {
	case s.filtering:
		bs = []key.Binding{
			key.NewBinding(key.WithKeys("x"), key.WithHelp("type", "to narrow")),
			key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "keep")),
			key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "clear")),
		}
	case s.focus == fieldInventory:
		bs = []key.Binding{sk.Reload, sk.Next, quit}
	case s.focus == fieldImage:
		bs = []key.Binding{
			key.NewBinding(key.WithKeys("tab"), key.WithHelp("tab", "complete/next")),
			key.NewBinding(key.WithKeys("up"), key.WithHelp("↑/↓", "choose")),
			sk.Start, quit,
		}
	case s.focus == fieldHosts:
		bs = []key.Binding{sk.Toggle, sk.All, sk.Group, k.Filter, sk.Start, sk.Next, k.Quit}
	default:
		bs = []key.Binding{sk.Left, sk.Next, sk.Start, k.Quit}
	}
	return " " + helpLine(c.styles, c.width-1, bs...)
}

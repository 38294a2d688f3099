package tui

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/layercast/layercast/orchestrator"
)

// formatDuration prints m:ss or h:mm:ss.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// formatPercent prints a fraction in [0,1] as "62%".
func formatPercent(f float64) string {
	return fmt.Sprintf("%.0f%%", math.Floor(clamp01(f)*100))
}

func clamp01(f float64) float64 {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	if f > 1 {
		return 1
	}
	return f
}

// fraction is done/total, 0 when total is unknown.
func fraction(done, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return clamp01(float64(done) / float64(total))
}

// bar draws a progress bar of width cells that reads without colour too.
func bar(s *styles, width int, f float64, fill lipgloss.Style) string {
	if width <= 0 {
		return ""
	}
	full := int(math.Round(clamp01(f) * float64(width)))
	if f > 0 && full == 0 {
		full = 1
	}
	return fill.Render(strings.Repeat("█", full)) + s.barEmpty.Render(strings.Repeat("░", width-full))
}

// fit truncates s to width cells and pads it with spaces to exactly width.
func fit(s string, width int) string {
	if width <= 0 {
		return ""
	}
	w := ansi.StringWidth(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return s + strings.Repeat(" ", width-w)
}

// fitRight is fit, aligned right.
func fitRight(s string, width int) string {
	if width <= 0 {
		return ""
	}
	w := ansi.StringWidth(s)
	if w > width {
		return ansi.Truncate(s, width, "…")
	}
	return strings.Repeat(" ", width-w) + s
}

// clip cuts every line of s to width cells and keeps at most height lines,
// so a frame never wraps or scrolls the terminal.
func clip(s string, width, height int) string {
	lines := strings.Split(s, "\n")
	if height > 0 && len(lines) > height {
		lines = lines[:height]
	}
	for i, l := range lines {
		if ansi.StringWidth(l) > width {
			lines[i] = ansi.Truncate(l, width, "")
		}
	}
	return strings.Join(lines, "\n")
}

// stateLabel is how a host state reads in tables.
func stateLabel(st orchestrator.HostState) string {
	switch st {
	case "":
		return string(orchestrator.HostPending)
	default:
		return string(st)
	}
}

// naturalLess orders "h2" before "h10".
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		ad, bd := isDigit(a[0]), isDigit(b[0])
		if ad && bd {
			ai, bi := digitRun(a), digitRun(b)
			an, bn := strings.TrimLeft(a[:ai], "0"), strings.TrimLeft(b[:bi], "0")
			if len(an) != len(bn) {
				return len(an) < len(bn)
			}
			if an != bn {
				return an < bn
			}
			a, b = a[ai:], b[bi:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func digitRun(s string) int {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return i
}

// shortDigest is the first 12 hex digits of a digest.
func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 {
		d = d[i+1:]
	}
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// scrollTo is the first line shown of a window of rows lines over n lines
// once line cursor is brought into view from offset: the window moves as
// little as it can and never past either end.
func scrollTo(cursor, offset, rows, n int) int {
	if cursor < offset {
		offset = cursor
	}
	if cursor >= offset+rows {
		offset = cursor - rows + 1
	}
	return max(min(offset, n-rows), 0)
}

package textfmt

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxHostText bounds one string that came from a host, in bytes, the "…"
// that marks a cut included.
const MaxHostText = 4096

// cutMark ends a string HostText cut short.
const cutMark = "…"

// HostText makes a string that came from a host (a node's event, remote
// stderr, a probe's answer, a path or an image reference it printed)
// harmless to show on a terminal, in a log, a report or a Markdown page.
// It is the one place such text is made safe; the orchestrator applies it
// to everything it hands out (events, reports, plans), so that no printer
// and no screen has to remember to.
//
// What stays: printable text in any script (letters, marks, digits,
// punctuation, symbols, ordinary spaces), tabs and newlines ("\r\n" and a
// lone "\r" become "\n", so a carriage return cannot overwrite a line).
// What is made visible instead of acting: every other control character
// (C0 such as ESC, DEL, C1 such as CSI U+009B) as \xNN, and every
// invisible or reordering character (format characters: the bidi
// controls U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C, zero-width
// characters, U+FEFF; line and paragraph separators; private-use and
// unassigned code points) as \uNNNN. A byte that is not UTF-8 shows as
// \xNN. An escape sequence thus reads as text ("\x1b]0;title\x07") and
// does nothing; the operator still sees that the host sent one.
//
// The result is at most MaxHostText bytes, ending in "…" when it was cut;
// HostText of a result is the result.
func HostText(s string) string {
	if len(s) <= MaxHostText && Harmless(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxHostText) + 8)
	i := 0
	for i < len(s) && b.Len() <= MaxHostText {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\r':
			if i+1 < len(s) && s[i+1] == '\n' {
				break // the \n follows
			}
			b.WriteByte('\n')
		case keep(r):
			b.WriteString(s[i : i+n])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	out := b.String()
	limit := MaxHostText - len(cutMark)
	if i == len(s) && len(out) <= MaxHostText {
		return out
	}
	// Cut, leaving room for the mark, never inside a rune or an escape.
	out = out[:limit]
	for !utf8.ValidString(out) {
		out = out[:len(out)-1]
	}
	if j := strings.LastIndexByte(out, '\\'); j >= 0 && len(out)-j < len(`\u0000`) {
		out = out[:j]
	}
	return out + cutMark
}

// Harmless reports whether s holds nothing that HostText would escape:
// printable text, tabs and newlines only, valid UTF-8. Tests of what the
// operator is shown use it.
func Harmless(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || !keep(r) {
			return false
		}
		i += n
	}
	return true
}

// keep reports whether r is shown as it is: graphic (which includes the
// ordinary spaces), a tab or a newline. Format characters (Cf: bidi
// controls, zero-width characters), controls, separators other than
// spaces, private-use and unassigned code points are not graphic.
func keep(r rune) bool {
	return r == '\n' || r == '\t' || unicode.IsGraphic(r)
}

package textfmt

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestHostText_ShowsControlsAndBidiInsteadOfActingOnThem(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain text, ünïcödé, 日本語 ✓", "plain text, ünïcödé, 日本語 ✓"},
		{"two\nlines\tand a tab", "two\nlines\tand a tab"},
		{"crlf\r\nand\rcr", "crlf\nand\ncr"},
		{"\x1b]0;pwned\x07title", `\x1b]0;pwned\x07title`},                           // OSC
		{"\x1b[2J\x1b[31mred", `\x1b[2J\x1b[31mred`},                                 // CSI
		{"c1 \u009b31m and \u0085 nel", `c1 \x9b31m and \x85 nel`},                   // C1
		{"del\x7f nul\x00", `del\x7f nul\x00`},                                       // DEL, NUL
		{"abc\u202edcba \u2066x\u2069 \u200e", `abc\u202edcba \u2066x\u2069 \u200e`}, // bidi
		{"zero\u200bwidth\ufeff", `zero\u200bwidth\ufeff`},
		{"line\u2028sep", `line\u2028sep`},
		{"bad \xff\xfe utf8", `bad \xff\xfe utf8`},
	} {
		if got := HostText(c.in); got != c.want {
			t.Errorf("HostText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestHostText_CutsLongTextWithAMark(t *testing.T) {
	long := strings.Repeat("ab", MaxHostText)
	got := HostText(long)
	if !strings.HasSuffix(got, "…") || len(got) > MaxHostText || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("long text: %d bytes, suffix %q", len(got), got[len(got)-8:])
	}
	esc := strings.Repeat("\x1b", MaxHostText)
	got = HostText(esc)
	body := strings.TrimSuffix(got, "…")
	if !strings.HasSuffix(got, "…") || len(body) > MaxHostText || len(body)%4 != 0 || strings.Trim(body, `\x1b`) != "" {
		t.Errorf("escapes cut mid-way: %d bytes, ends %q", len(got), got[len(got)-10:])
	}
	if got := HostText(strings.Repeat("ü", MaxHostText)); !utf8.ValidString(got) || len(got) > MaxHostText {
		t.Error("cut in the middle of a rune, or too long")
	}
}

// Whatever the input, the output holds no rune that acts on a terminal.
func FuzzHostText(f *testing.F) {
	f.Add("\x1b[31m\u202e\u009b\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		out := HostText(s)
		if len(out) > MaxHostText || HostText(out) != out {
			t.Fatalf("HostText(%q) = %q: too long or not stable", s, out)
		}
		for _, r := range out {
			if r != '\n' && r != '\t' && !unicode.IsGraphic(r) {
				t.Fatalf("HostText(%q) holds %U", s, r)
			}
		}
	})
}

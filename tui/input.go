package tui

import (
	"strings"
	"unicode"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"
)

// lineInput is a one-line text field. (bubbles/textinput would pull in a
// clipboard module that the project does not otherwise need.)
type lineInput struct {
	value       []rune
	pos         int
	focused     bool
	placeholder string
	width       int // cells for the text; 0: unbounded
}

func newLineInput(placeholder string) lineInput {
	return lineInput{placeholder: placeholder}
}

// Value is the text in the field.
func (in lineInput) Value() string {
	if len(in.value) == 0 {
		return "" // string(in.value) would allocate, even for nothing
	}
	return string(in.value)
}

func (in *lineInput) SetValue(s string) {
	in.value = []rune(s)
	in.pos = len(in.value)
}

func (in *lineInput) Focus() { in.focused = true }
func (in *lineInput) Blur()  { in.focused = false }

// update edits the field; it reports whether the key was an edit.
func (in lineInput) update(msg tea.KeyMsg) (lineInput, bool) {
	switch msg.Type {
	case tea.KeyRunes, tea.KeySpace:
		r := msg.Runes
		if msg.Type == tea.KeySpace {
			r = []rune{' '}
		}
		r = []rune(strings.Map(func(c rune) rune {
			if unicode.IsControl(c) {
				return -1
			}
			return c
		}, string(r)))
		v := make([]rune, 0, len(in.value)+len(r))
		v = append(v, in.value[:in.pos]...)
		v = append(v, r...)
		in.value = append(v, in.value[in.pos:]...)
		in.pos += len(r)
	case tea.KeyBackspace:
		if in.pos > 0 {
			in.value = append(in.value[:in.pos-1:in.pos-1], in.value[in.pos:]...)
			in.pos--
		}
	case tea.KeyDelete:
		if in.pos < len(in.value) {
			in.value = append(in.value[:in.pos:in.pos], in.value[in.pos+1:]...)
		}
	case tea.KeyLeft:
		in.pos = max(in.pos-1, 0)
	case tea.KeyRight:
		in.pos = min(in.pos+1, len(in.value))
	case tea.KeyHome, tea.KeyCtrlA:
		in.pos = 0
	case tea.KeyEnd, tea.KeyCtrlE:
		in.pos = len(in.value)
	case tea.KeyCtrlU:
		in.value = append([]rune(nil), in.value[in.pos:]...)
		in.pos = 0
	case tea.KeyCtrlK:
		in.value = in.value[:in.pos:in.pos]
	case tea.KeyCtrlW:
		i := in.pos
		for i > 0 && in.value[i-1] == ' ' {
			i--
		}
		for i > 0 && in.value[i-1] != ' ' {
			i--
		}
		in.value = append(in.value[:i:i], in.value[in.pos:]...)
		in.pos = i
	default:
		return in, false
	}
	return in, true
}

func (in lineInput) view(s *styles) string {
	if len(in.value) == 0 {
		if in.focused {
			return s.cursor.Render("█") + s.faint.Render(in.placeholder)
		}
		return s.faint.Render(in.placeholder)
	}
	text := string(in.value)
	if !in.focused {
		if in.width > 0 {
			text = ansi.Truncate(text, in.width, "…")
		}
		return s.value.Render(text)
	}
	// Keep the cursor in view: show the end of a long value.
	start := 0
	if in.width > 1 && in.pos >= in.width {
		start = in.pos - in.width + 1
	}
	before := string(in.value[start:in.pos])
	if in.pos == len(in.value) {
		return s.value.Render(before) + s.cursor.Render("█")
	}
	under := string(in.value[in.pos])
	after := string(in.value[in.pos+1:])
	if in.width > 0 {
		after = ansi.Truncate(after, max(in.width-len(in.value[start:in.pos])-1, 0), "…")
	}
	return s.value.Render(before) + s.cursor.Reverse(true).Render(under) + s.value.Render(after)
}

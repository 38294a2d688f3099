package inventory

// The INI form of an Ansible inventory.

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

var iniSection = regexp.MustCompile(`^\[([^\[\]:\s]+)(?::(vars|children))?\]$`)

// maxExpand bounds the hosts one range pattern may produce.
const maxExpand = 10000

func parseAnsibleINI(file string, data []byte, opts Options) (*Inventory, []*Error) {
	m := newAnsibleModel(file)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	section, kind := "ungrouped", ""
	lineNo := 0
	for sc.Scan() {
		lineNo++
		raw := strings.TrimSpace(sc.Text())
		if raw == "" || raw[0] == '#' || raw[0] == ';' {
			continue
		}
		if strings.HasPrefix(raw, "[") && strings.HasSuffix(raw, "]") && !strings.Contains(raw[1:len(raw)-1], "[") {
			sm := iniSection.FindStringSubmatch(raw)
			if sm == nil {
				m.errorf(loc{line: lineNo}, "%s: not a section header (want [group], [group:vars] or [group:children])", raw)
				section, kind = "", "invalid"
				continue
			}
			section, kind = sm[1], sm[2]
			m.group(section, loc{line: lineNo, path: raw})
			continue
		}
		at := loc{line: lineNo}
		switch kind {
		case "invalid":
		case "vars":
			k, v, ok := strings.Cut(raw, "=")
			k = strings.TrimSpace(k)
			at.path = fmt.Sprintf("[%s:vars] %s", section, k)
			if !ok || k == "" {
				at.path = fmt.Sprintf("[%s:vars]", section)
				m.errorf(at, "%q: want key=value", raw)
				continue
			}
			val, err := iniValue(strings.TrimSpace(v))
			if err != nil {
				m.errorf(at, "%v", err)
				continue
			}
			m.group(section, at).vars[k] = ansibleVar{value: val, at: at}
		case "children":
			at.path = fmt.Sprintf("[%s:children]", section)
			if strings.ContainsAny(raw, " \t=") {
				m.errorf(at, "%q: want one group name per line", raw)
				continue
			}
			m.addChild(section, raw, at)
		default:
			m.iniHostLine(section, raw, at)
		}
	}
	if err := sc.Err(); err != nil {
		m.errorf(loc{line: lineNo + 1}, "cannot read: %v", err)
	}
	return m.inventory(opts)
}

// iniHostLine reads "pattern key=value ...".
func (m *ansibleModel) iniHostLine(group, raw string, at loc) {
	words, err := splitWords(raw)
	if err != nil {
		at.path = fmt.Sprintf("[%s]", group)
		m.errorf(at, "%v", err)
		return
	}
	if len(words) == 0 {
		return
	}
	pattern := words[0]
	at.path = pattern
	names, port, err := expandHostPattern(pattern)
	if err != nil {
		m.errorf(at, "%v", err)
		return
	}
	vars := map[string]ansibleVar{}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			m.errorf(at, "%q: want key=value after the host name", w)
			continue
		}
		vars[k] = ansibleVar{value: v, at: loc{line: at.line, path: pattern + " " + k}}
	}
	m.addHosts(names, port, group, vars, at)
}

// iniValue unquotes a value from a [group:vars] line.
func iniValue(v string) (string, error) {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') {
		words, err := splitWords(v)
		if err != nil {
			return "", err
		}
		if len(words) == 1 {
			return words[0], nil
		}
	}
	return v, nil
}

// splitWords splits a line on blanks, honouring '...' and "..." quotes and
// backslash escapes in double quotes; a word starting with # ends the line.
func splitWords(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		inTok bool
		quote byte
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, inTok = c, true
		case c == ' ' || c == '\t':
			if inTok {
				words = append(words, cur.String())
				cur.Reset()
				inTok = false
			}
		case c == '#' && !inTok:
			return words, nil
		default:
			cur.WriteByte(c)
			inTok = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inTok {
		words = append(words, cur.String())
	}
	return words, nil
}

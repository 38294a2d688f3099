package inventory

// Ansible host patterns: "web[01:03].lab", "db:2222".

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

var hostRange = regexp.MustCompile(`\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]`)

// expandHostPattern expands "web[01:03].lab" into its hosts, and splits a
// trailing ":port" (not in bare IPv6 addresses).
func expandHostPattern(p string) ([]string, string, error) {
	port := ""
	if i := strings.LastIndex(p, ":"); i > 0 && !strings.Contains(p[i:], "]") && strings.Count(hostRange.ReplaceAllString(p, "r"), ":") == 1 {
		p, port = p[:i], p[i+1:]
		if _, err := parsePort(port); err != nil {
			return nil, "", fmt.Errorf("host %s: %v", p, err)
		}
	}
	names := []string{p}
	for {
		var out []string
		expanded := false
		for _, n := range names {
			idx := hostRange.FindStringSubmatchIndex(n)
			if idx == nil {
				out = append(out, n)
				continue
			}
			expanded = true
			parts, err := expandRange(n[idx[2]:idx[3]], n[idx[4]:idx[5]], subOr(n, idx, 6))
			if err != nil {
				return nil, "", fmt.Errorf("host pattern %s: %v", p, err)
			}
			for _, part := range parts {
				out = append(out, n[:idx[0]]+part+n[idx[1]:])
				if len(out) > maxExpand {
					return nil, "", fmt.Errorf("host pattern %s expands to more than %d hosts", p, maxExpand)
				}
			}
		}
		names = out
		if !expanded {
			break
		}
	}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "[]") {
			return nil, "", fmt.Errorf("%q is not a host name or range pattern", p)
		}
	}
	return names, port, nil
}

func subOr(s string, idx []int, i int) string {
	if idx[i] < 0 {
		return ""
	}
	return s[idx[i]:idx[i+1]]
}

func expandRange(from, to, stride string) ([]string, error) {
	step := 1
	if stride != "" {
		n, err := strconv.Atoi(stride)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("stride %q", stride)
		}
		step = n
	}
	isLetter := func(s string) bool { return len(s) == 1 && s[0] >= 'a' && s[0] <= 'z' }
	if isLetter(from) != isLetter(to) {
		return nil, fmt.Errorf("range [%s:%s] mixes letters and numbers", from, to)
	}
	var out []string
	if isLetter(from) {
		if from[0] > to[0] {
			return nil, fmt.Errorf("range [%s:%s] runs backwards", from, to)
		}
		for c := int(from[0]); c <= int(to[0]); c += step {
			out = append(out, string(rune(c)))
		}
		return out, nil
	}
	a, err1 := strconv.Atoi(from)
	b, err2 := strconv.Atoi(to)
	if err1 != nil || err2 != nil || a > b {
		return nil, fmt.Errorf("range [%s:%s] is not a rising number range", from, to)
	}
	if (b-a)/step >= maxExpand {
		return nil, fmt.Errorf("range [%s:%s] has more than %d hosts", from, to, maxExpand)
	}
	width := 0
	if len(from) > 1 && from[0] == '0' {
		width = len(from)
	}
	for i := a; i <= b; i += step {
		out = append(out, fmt.Sprintf("%0*d", width, i))
	}
	return out, nil
}

// --- YAML ---

package inventory

// Ansible inventories, INI and YAML.
//
// Read: hosts (host patterns with [01:10] or [a:f] ranges, and "host:port"),
// groups, children (nested groups, any depth), group vars and host vars,
// with Ansible's precedence: the group "all", then parent groups before
// their children (by depth, then by name), then the host's own vars.
//
// Variables used:
//
//	ansible_host, ansible_ssh_host                    -> address
//	ansible_port, ansible_ssh_port                    -> port
//	ansible_user, ansible_ssh_user                    -> user
//	ansible_ssh_private_key_file, ansible_private_key_file -> identity_file
//	ansible_become                                    -> become
//	layercast_docker_host                             -> docker_host
//
// Ignored, and listed in Inventory.Ignored: every other variable (for
// example ansible_python_interpreter), passwords (ansible_password,
// ansible_become_password: layercast never sends a password, it uses keys
// and `sudo -n`), ansible_ssh_common_args and ansible_ssh_extra_args (put
// ProxyJump and other options in ~/.ssh/config instead), ansible_become_user
// and ansible_become_method (layercast only runs `sudo -n` as root), group
// priority, host_vars/ and group_vars/ directories, dynamic inventory
// scripts and plugins. Hosts with ansible_connection other than ssh, smart
// or paramiko (for example "local") are left out and listed too.
//
// Templates ("{{ ... }}") are not evaluated: one in a variable that layercast
// uses is an error.

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// ansibleVar is one variable with where it was written.
type ansibleVar struct {
	value string
	at    loc
}

type ansibleGroup struct {
	name     string
	hosts    []string
	children []string
	vars     map[string]ansibleVar
	at       loc
}

// ansibleModel is what both Ansible forms read, before it becomes an
// Inventory.
type ansibleModel struct {
	file     string
	hosts    []string // in order of first appearance
	hostAt   map[string]loc
	hostVars map[string]map[string]ansibleVar
	groups   map[string]*ansibleGroup
	errs     []*Error
}

func newAnsibleModel(file string) *ansibleModel {
	return &ansibleModel{
		file:     file,
		hostAt:   map[string]loc{},
		hostVars: map[string]map[string]ansibleVar{},
		groups:   map[string]*ansibleGroup{},
	}
}

func (m *ansibleModel) errorf(at loc, format string, args ...any) {
	m.errs = append(m.errs, &Error{File: m.file, Line: at.line, Field: at.path, Msg: fmt.Sprintf(format, args...)})
}

func (m *ansibleModel) group(name string, at loc) *ansibleGroup {
	g, ok := m.groups[name]
	if !ok {
		g = &ansibleGroup{name: name, vars: map[string]ansibleVar{}, at: at}
		m.groups[name] = g
	}
	return g
}

func (m *ansibleModel) addHost(name, group string, at loc) {
	if _, ok := m.hostAt[name]; !ok {
		m.hosts = append(m.hosts, name)
		m.hostAt[name] = at
		m.hostVars[name] = map[string]ansibleVar{}
	}
	g := m.group(group, at)
	if !slices.Contains(g.hosts, name) {
		g.hosts = append(g.hosts, name)
	}
}

func (m *ansibleModel) addChild(parent, child string, at loc) {
	g := m.group(parent, at)
	m.group(child, at)
	if !slices.Contains(g.children, child) {
		g.children = append(g.children, child)
	}
}

// depths gives every group its distance from "all"; a group that no other
// group lists as a child hangs under "all". Cycles are errors.
func (m *ansibleModel) depths() map[string]int {
	parents := map[string][]string{}
	for _, g := range m.groups {
		for _, c := range g.children {
			parents[c] = append(parents[c], g.name)
		}
	}
	depth := map[string]int{}
	const visiting = -1
	var walk func(name string, chain []string) int
	walk = func(name string, chain []string) int {
		if d, ok := depth[name]; ok {
			if d == visiting {
				g := m.groups[name]
				m.errorf(g.at, "group %s: children form a cycle: %s", name, strings.Join(append(chain, name), " -> "))
				return 0
			}
			return d
		}
		if name == "all" {
			depth[name] = 0
			return 0
		}
		depth[name] = visiting
		d := 1
		for _, p := range parents[name] {
			if pd := walk(p, append(chain, name)) + 1; pd > d {
				d = pd
			}
		}
		depth[name] = d
		return d
	}
	for _, name := range slices.Sorted(mapKeys(m.groups)) {
		walk(name, nil)
	}
	return depth
}

// members lists the hosts of a group with those of its children, in the
// model's host order.
func (m *ansibleModel) members(name string) []string {
	in := map[string]bool{}
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		g := m.groups[n]
		if g == nil {
			return
		}
		for _, h := range g.hosts {
			in[h] = true
		}
		for _, c := range g.children {
			walk(c)
		}
	}
	walk(name)
	var out []string
	for _, h := range m.hosts {
		if in[h] || name == "all" {
			out = append(out, h)
		}
	}
	return out
}

// ansibleConnections that reach a host over SSH.
var sshConnections = map[string]bool{"": true, "ssh": true, "smart": true, "paramiko": true, "paramiko_ssh": true}

// inventory turns the model into an Inventory, applying variables by
// Ansible's precedence.
func (m *ansibleModel) inventory(opts Options) (*Inventory, []*Error) {
	if len(m.errs) > 0 {
		return nil, m.errs
	}
	if len(m.hosts) == 0 {
		m.errorf(loc{}, "the inventory lists no hosts")
		return nil, m.errs
	}
	depth := m.depths()
	if len(m.errs) > 0 {
		return nil, m.errs
	}
	memberOf := map[string][]string{}
	for name := range m.groups {
		for _, h := range m.members(name) {
			memberOf[h] = append(memberOf[h], name)
		}
	}
	inv := &Inventory{Groups: map[string][]string{}}
	ignored := map[string][]string{} // description -> hosts
	var (
		kept   []string
		fields []map[string]loc
	)
	for _, name := range m.hosts {
		groups := memberOf[name]
		if !slices.Contains(groups, "all") {
			groups = append(groups, "all")
		}
		slices.SortFunc(groups, func(a, b string) int {
			return cmp.Or(cmp.Compare(depth[a], depth[b]), cmp.Compare(a, b))
		})
		vars := map[string]ansibleVar{}
		for _, g := range groups {
			if gr := m.groups[g]; gr != nil {
				for k, v := range gr.vars {
					vars[k] = v
				}
			}
		}
		for k, v := range m.hostVars[name] {
			vars[k] = v
		}
		if c := vars["ansible_connection"].value; !sshConnections[c] {
			d := fmt.Sprintf("host left out: ansible_connection=%s is not SSH", c)
			ignored[d] = append(ignored[d], name)
			continue
		}
		h, at := m.hostFromVars(name, vars, opts, ignored)
		kept = append(kept, name)
		inv.Hosts = append(inv.Hosts, h)
		fields = append(fields, at)
	}
	if len(m.errs) > 0 {
		return nil, m.errs
	}
	keptSet := map[string]bool{}
	for _, h := range kept {
		keptSet[h] = true
	}
	for name := range m.groups {
		var list []string
		for _, h := range m.members(name) {
			if keptSet[h] {
				list = append(list, h)
			}
		}
		inv.Groups[name] = list
	}
	for _, d := range slices.Sorted(mapKeys(ignored)) {
		inv.Ignored = append(inv.Ignored, fmt.Sprintf("%s (%s)", d, summarizeHosts(ignored[d])))
	}
	locate := func(i int, field string) loc {
		if at, ok := fields[i][field]; ok {
			return at
		}
		return m.hostAt[kept[i]]
	}
	if errs := finish(inv, m.file, locate); len(errs) > 0 {
		return nil, errs
	}
	return inv, nil
}

func summarizeHosts(hs []string) string {
	if len(hs) > 5 {
		return fmt.Sprintf("%s and %d more hosts", strings.Join(hs[:5], ", "), len(hs)-5)
	}
	return strings.Join(hs, ", ")
}

// hostFromVars maps Ansible variables to a Host; at says where each Host
// field came from.
func (m *ansibleModel) hostFromVars(name string, vars map[string]ansibleVar, opts Options, ignored map[string][]string) (Host, map[string]loc) {
	h := Host{Name: name}
	at := map[string]loc{}
	use := func(field string, v ansibleVar) (string, bool) {
		if strings.Contains(v.value, "{{") || strings.Contains(v.value, "{%") {
			m.errorf(v.at, "%q: templates are not evaluated by layercast; write the value", v.value)
			return "", false
		}
		at[field] = v.at
		return v.value, true
	}
	for _, k := range slices.Sorted(mapKeys(vars)) {
		v := vars[k]
		switch k {
		case "ansible_host", "ansible_ssh_host":
			if s, ok := use("address", v); ok {
				if s == "" {
					m.errorf(v.at, "is empty")
				}
				h.Address = s
			}
		case "ansible_port", "ansible_ssh_port":
			if s, ok := use("port", v); ok {
				p, err := parsePort(s)
				if err != nil {
					m.errorf(v.at, "%v", err)
				}
				h.Port = p
			}
		case "ansible_user", "ansible_ssh_user":
			if s, ok := use("user", v); ok {
				h.User = s
			}
		case "ansible_ssh_private_key_file", "ansible_private_key_file":
			if s, ok := use("identity_file", v); ok {
				h.IdentityFile = expandPath(s, opts)
			}
		case "ansible_become":
			if s, ok := use("become", v); ok {
				b, err := ansibleBool(s)
				if err != nil {
					m.errorf(v.at, "%v", err)
				}
				h.Become = b
			}
		case "layercast_docker_host":
			if s, ok := use("docker_host", v); ok {
				h.DockerHost = s
			}
		case "ansible_connection":
		case "ansible_become_user":
			if v.value != "root" && v.value != "" {
				ignored["ansible_become_user: layercast runs sudo -n as root"] = append(ignored["ansible_become_user: layercast runs sudo -n as root"], name)
			}
		case "ansible_become_method":
			if v.value != "sudo" {
				ignored["ansible_become_method: layercast only uses sudo -n"] = append(ignored["ansible_become_method: layercast only uses sudo -n"], name)
			}
		case "ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_password", "ansible_become_pass", "ansible_sudo_pass":
			d := k + ": layercast never sends passwords (use keys or ssh-agent, and sudo -n)"
			ignored[d] = append(ignored[d], name)
		case "ansible_ssh_common_args", "ansible_ssh_extra_args", "ansible_ssh_args":
			d := k + ": put ProxyJump and other options in ~/.ssh/config"
			ignored[d] = append(ignored[d], name)
		default:
			d := k + ": not used by layercast"
			ignored[d] = append(ignored[d], name)
		}
	}
	return h, at
}

// ansibleBool reads a boolean as Ansible does.
func ansibleBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "1", "y", "t":
		return true, nil
	case "false", "no", "off", "0", "n", "f", "":
		return false, nil
	}
	return false, fmt.Errorf("%q is not true or false", s)
}

// --- INI ---

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
	if port != "" {
		if _, set := vars["ansible_port"]; !set {
			vars["ansible_port"] = ansibleVar{value: port, at: at}
		}
	}
	for _, n := range names {
		m.addHost(n, group, at)
		for k, v := range vars {
			m.hostVars[n][k] = v
		}
	}
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

func parseAnsibleYAML(file string, data []byte, opts Options) (*Inventory, []*Error) {
	root, perr := parseYAML(file, data)
	if perr != nil {
		return nil, []*Error{perr}
	}
	m := newAnsibleModel(file)
	w := newWalker(file, root)
	top, _ := w.mapping(root, "")
	for _, p := range top {
		m.yamlGroup(w, p.key, p.node, p.value, p.key, opts, 0)
	}
	if len(w.errs) > 0 {
		return nil, w.errs
	}
	return m.inventory(opts)
}

// maxGroupDepth bounds nesting of children in a YAML inventory.
const maxGroupDepth = 64

func (m *ansibleModel) yamlGroup(w *walker, name string, keyNode, n ast.Node, path string, opts Options, depth int) {
	if depth > maxGroupDepth {
		w.errorf(keyNode, path, "groups nested deeper than %d", maxGroupDepth)
		return
	}
	m.group(name, loc{line: line(keyNode), path: path})
	pairs, _ := w.mapping(n, path)
	for _, p := range pairs {
		f := join(path, p.key)
		switch p.key {
		case "hosts":
			hosts, _ := w.mapping(p.value, f)
			for _, h := range hosts {
				hf := join(f, h.key)
				names, port, err := expandHostPattern(h.key)
				if err != nil {
					w.errorf(h.node, hf, "%v", err)
					continue
				}
				at := loc{line: line(h.node), path: hf}
				vars := m.yamlVars(w, h.value, hf)
				if port != "" {
					if _, set := vars["ansible_port"]; !set {
						vars["ansible_port"] = ansibleVar{value: port, at: at}
					}
				}
				for _, hn := range names {
					m.addHost(hn, name, at)
					for k, v := range vars {
						m.hostVars[hn][k] = v
					}
				}
			}
		case "vars":
			g := m.groups[name]
			for k, v := range m.yamlVars(w, p.value, f) {
				g.vars[k] = v
			}
		case "children":
			children, _ := w.mapping(p.value, f)
			for _, c := range children {
				m.addChild(name, c.key, loc{line: line(c.node), path: join(f, c.key)})
				m.yamlGroup(w, c.key, c.node, c.value, join(f, c.key), opts, depth+1)
			}
		default:
			w.errorf(p.node, f, "unknown field (an Ansible group has hosts, vars and children)")
		}
	}
}

// yamlVars reads a mapping of variables; values that are not scalars are
// kept as their YAML text (they can only be ignored ones).
func (m *ansibleModel) yamlVars(w *walker, n ast.Node, path string) map[string]ansibleVar {
	out := map[string]ansibleVar{}
	pairs, _ := w.mapping(n, path)
	for _, p := range pairs {
		f := join(path, p.key)
		v := w.resolve(p.value, f)
		s, ok := scalarText(v)
		if !ok && v != nil {
			s = v.String()
		}
		out[p.key] = ansibleVar{value: s, at: loc{line: line(p.node), path: f}}
	}
	return out
}

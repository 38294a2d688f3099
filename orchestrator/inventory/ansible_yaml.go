package inventory

// The YAML form of an Ansible inventory.

import (
	"github.com/goccy/go-yaml/ast"
)

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
				m.addHosts(names, port, name, m.yamlVars(w, h.value, hf), at)
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

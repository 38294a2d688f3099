package inventory

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// maxAliasDepth bounds how many aliases, anchors and tags one value may sit
// behind; deeper chains are malformed (or hostile) input.
const maxAliasDepth = 32

// walker reads a goccy/go-yaml syntax tree field by field, so that every
// error it records names the file, the line and the field.
type walker struct {
	file    string
	anchors map[string]ast.Node
	errs    []*Error
}

func newWalker(file string, root ast.Node) *walker {
	w := &walker{file: file, anchors: map[string]ast.Node{}}
	if root != nil {
		ast.Walk(anchorCollector(w.anchors), root)
	}
	return w
}

type anchorCollector map[string]ast.Node

func (a anchorCollector) Visit(n ast.Node) ast.Visitor {
	if an, ok := n.(*ast.AnchorNode); ok && an.Name != nil {
		a[an.Name.String()] = an.Value
	}
	return a
}

// line is the 1-based line of n, or 0 when the tree does not know it.
func line(n ast.Node) int {
	if n == nil {
		return 0
	}
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

func (w *walker) errorf(n ast.Node, field, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: line(n), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows anchors, aliases and tags to the node that holds the value.
// It returns nil for a missing value or a broken alias (recorded as an error).
func (w *walker) resolve(n ast.Node, field string) ast.Node {
	for range maxAliasDepth {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			name := ""
			if v.Value != nil {
				name = v.Value.String()
			}
			target, ok := w.anchors[name]
			if !ok {
				w.errorf(v, field, "unknown alias *%s", name)
				return nil
			}
			n = target
		default:
			return n
		}
	}
	w.errorf(n, field, "aliases nested deeper than %d", maxAliasDepth)
	return nil
}

// pair is one key of a mapping with its value.
type pair struct {
	key   string
	node  ast.Node // the key, for its line
	value ast.Node
}

// mapping returns the keys of a mapping in order. Merge keys (<<) are
// expanded: their keys come first and keys written in the mapping win. A
// null value is an empty mapping. A duplicate key is an error.
func (w *walker) mapping(n ast.Node, field string) ([]pair, bool) {
	return w.mappingDepth(n, field, 0)
}

func (w *walker) mappingDepth(n ast.Node, field string, depth int) ([]pair, bool) {
	orig := n
	n = w.resolve(n, field)
	if n == nil {
		return nil, orig == nil
	}
	if _, ok := n.(*ast.NullNode); ok {
		return nil, true
	}
	m, ok := n.(*ast.MappingNode)
	if !ok {
		if mv, isMV := n.(*ast.MappingValueNode); isMV {
			m = &ast.MappingNode{BaseNode: mv.BaseNode, Values: []*ast.MappingValueNode{mv}}
		} else {
			w.errorf(orig, field, "want a mapping (key: value), found %s", describe(n))
			return nil, false
		}
	}
	var merged, own []pair
	seen := map[string]bool{}
	okAll := true
	for _, mv := range m.Values {
		if mv == nil || mv.Key == nil {
			continue
		}
		if mv.Key.IsMergeKey() {
			if depth >= maxAliasDepth {
				w.errorf(mv.Key, field, "merge keys nested deeper than %d", maxAliasDepth)
				okAll = false
				continue
			}
			for _, src := range w.mergeSources(mv.Value, field) {
				ps, ok := w.mappingDepth(src, field, depth+1)
				okAll = okAll && ok
				merged = append(merged, ps...)
			}
			continue
		}
		key, ok := w.keyString(mv.Key, field)
		if !ok {
			okAll = false
			continue
		}
		if seen[key] {
			w.errorf(mv.Key, join(field, key), "duplicate key")
			okAll = false
			continue
		}
		seen[key] = true
		own = append(own, pair{key: key, node: mv.Key, value: mv.Value})
	}
	out := make([]pair, 0, len(merged)+len(own))
	for _, p := range merged {
		if !seen[p.key] {
			seen[p.key] = true
			out = append(out, p)
		}
	}
	return append(out, own...), okAll
}

// mergeSources is the value of a merge key: one mapping or a list of them.
func (w *walker) mergeSources(n ast.Node, field string) []ast.Node {
	r := w.resolve(n, field)
	if s, ok := r.(*ast.SequenceNode); ok {
		return s.Values
	}
	return []ast.Node{n}
}

func (w *walker) keyString(k ast.Node, field string) (string, bool) {
	r := w.resolve(k, field)
	s, ok := scalarText(r)
	if !ok {
		w.errorf(k, field, "a key must be a plain value, found %s", describe(r))
		return "", false
	}
	return s, true
}

// sequence returns the items of a list; null is an empty list.
func (w *walker) sequence(n ast.Node, field string) ([]ast.Node, bool) {
	orig := n
	n = w.resolve(n, field)
	if n == nil {
		return nil, orig == nil
	}
	switch v := n.(type) {
	case *ast.NullNode:
		return nil, true
	case *ast.SequenceNode:
		return v.Values, true
	}
	w.errorf(orig, field, "want a list, found %s", describe(n))
	return nil, false
}

// str reads a scalar as text. Numbers and booleans keep their spelling, so
// `name: 01` is the host "01". Null is the empty string.
func (w *walker) str(n ast.Node, field string) (string, bool) {
	orig := n
	n = w.resolve(n, field)
	if n == nil {
		return "", orig == nil
	}
	if _, ok := n.(*ast.NullNode); ok {
		return "", true
	}
	s, ok := scalarText(n)
	if !ok {
		w.errorf(orig, field, "want a single value, found %s", describe(n))
		return "", false
	}
	return s, true
}

func (w *walker) boolean(n ast.Node, field string) (bool, bool) {
	r := w.resolve(n, field)
	if b, ok := r.(*ast.BoolNode); ok {
		return b.Value, true
	}
	s, _ := scalarText(r)
	w.errorf(n, field, "%q is not true or false", s)
	return false, false
}

func (w *walker) port(n ast.Node, field string) (int, bool) {
	s, ok := w.str(n, field)
	if !ok {
		return 0, false
	}
	p, err := parsePort(s)
	if err != nil {
		w.errorf(n, field, "%v", err)
		return 0, false
	}
	return p, true
}

// parsePort accepts 1..65535 written in decimal.
func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return p, nil
}

// scalarText is the text of a scalar node as written (quotes removed).
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		if tk := n.GetToken(); tk != nil {
			return tk.Value, true
		}
	case *ast.NullNode:
		return "", true
	}
	return "", false
}

func describe(n ast.Node) string {
	switch n.(type) {
	case nil:
		return "nothing"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "an empty value"
	}
	if s, ok := scalarText(n); ok {
		return fmt.Sprintf("%q", s)
	}
	return n.Type().String()
}

// join builds a field path: join("hosts[3]", "port") is "hosts[3].port".
func join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "." + child
}

func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

package inventory

import (
	"errors"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/layercast/layercast/internal/byterate"
)

// parseLayercast reads layercast's own YAML inventory.
func parseLayercast(file string, data []byte, opts Options) (*Inventory, []*Error) {
	root, perr := parseYAML(file, data)
	if perr != nil {
		return nil, []*Error{perr}
	}
	w := newWalker(file, root)
	inv := &Inventory{Groups: map[string][]string{}}
	top, _ := w.mapping(root, "")
	if root == nil {
		w.errorf(nil, "", "the inventory is empty")
	}

	var (
		defaults    hostFields
		hostsNode   ast.Node
		groupsNode  ast.Node
		hostsKeyAt  ast.Node
		defaultsLoc = map[string]loc{}
	)
	for _, p := range top {
		switch p.key {
		case "known_hosts":
			if s, ok := w.str(p.value, p.key); ok {
				if s == "" {
					w.errorf(p.node, p.key, "is empty (leave it out to use ~/.ssh/known_hosts)")
				}
				inv.KnownHosts = expandPath(s, opts)
			}
		case "defaults":
			defaults = w.hostFields(p.value, "defaults", false, opts)
			for f, n := range defaults.nodes {
				defaultsLoc[f] = loc{line: line(n), path: "defaults." + f}
			}
		case "hosts":
			hostsNode, hostsKeyAt = p.value, p.node
		case "groups":
			groupsNode = p.value
		default:
			w.errorf(p.node, p.key, "unknown field (want known_hosts, defaults, hosts or groups)")
		}
	}

	items, _ := w.sequence(hostsNode, "hosts")
	if root != nil && len(items) == 0 && len(w.errs) == 0 {
		w.errorf(hostsKeyAt, "hosts", "the inventory lists no hosts")
	}
	type hostAt struct {
		fields hostFields
		field  string // "hosts[3]"
		line   int
	}
	var hosts []hostAt
	firstLine := map[string]int{}
	for i, item := range items {
		field := index("hosts", i)
		hf := w.hostFields(item, field, true, opts)
		if !hf.ok {
			// Its name is known all the same, so that groups listing it
			// do not bury the host's own error under theirs.
			if _, dup := firstLine[hf.host.Name]; hf.host.Name != "" && !dup {
				firstLine[hf.host.Name] = line(hf.nodes["name"])
			}
			continue
		}
		if hf.host.Name == "" {
			if _, set := hf.nodes["name"]; !set {
				w.errorf(item, field, "a host needs a name")
				continue
			}
		}
		if first, dup := firstLine[hf.host.Name]; dup {
			w.errorf(hf.nodes["name"], join(field, "name"), "duplicate host %q (first defined on line %d)", hf.host.Name, first)
			continue
		}
		firstLine[hf.host.Name] = line(hf.nodes["name"])
		hf.applyDefaults(defaults)
		hosts = append(hosts, hostAt{fields: hf, field: field, line: line(item)})
		inv.Hosts = append(inv.Hosts, hf.host)
	}

	groups, _ := w.mapping(groupsNode, "groups")
	for _, g := range groups {
		field := join("groups", g.key)
		if strings.ContainsAny(g.key, " \t,") || g.key == "" {
			w.errorf(g.node, field, "%q: a group name may not be empty nor contain spaces or commas", g.key)
		}
		members, _ := w.sequence(g.value, field)
		seen := map[string]bool{}
		list := []string{}
		for i, m := range members {
			mf := index(field, i)
			name, ok := w.str(m, mf)
			if !ok {
				continue
			}
			if _, known := firstLine[name]; !known {
				hint := ""
				if _, isGroup := findPair(groups, name); isGroup {
					hint = " (groups cannot contain groups; list its hosts)"
				}
				w.errorf(m, mf, "unknown host %q%s", name, hint)
				continue
			}
			if !seen[name] {
				seen[name] = true
				list = append(list, name)
			}
		}
		inv.Groups[g.key] = list
	}
	if len(w.errs) > 0 {
		return nil, w.errs
	}

	locate := func(i int, field string) loc {
		h := hosts[i]
		if field == "" {
			return loc{line: h.line, path: h.field}
		}
		if n, ok := h.fields.nodes[field]; ok {
			return loc{line: line(n), path: join(h.field, field)}
		}
		if l, ok := defaultsLoc[field]; ok {
			return l
		}
		return loc{line: h.line, path: join(h.field, field)}
	}
	if errs := finish(inv, file, locate); len(errs) > 0 {
		return nil, errs
	}
	return inv, nil
}

func findPair(ps []pair, key string) (pair, bool) {
	for _, p := range ps {
		if p.key == key {
			return p, true
		}
	}
	return pair{}, false
}

// parseYAML parses one YAML document; more than one is an error.
func parseYAML(file string, data []byte) (ast.Node, *Error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, yamlSyntaxError(file, err)
	}
	var docs []*ast.DocumentNode
	for _, d := range f.Docs {
		if d != nil && d.Body != nil {
			docs = append(docs, d)
		}
	}
	switch len(docs) {
	case 0:
		return nil, nil
	case 1:
		return docs[0].Body, nil
	}
	return nil, &Error{File: file, Line: line(docs[1]), Msg: "more than one YAML document; an inventory is one document"}
}

// yamlSyntaxError turns a goccy/go-yaml error into an *Error with its line.
func yamlSyntaxError(file string, err error) *Error {
	e := &Error{File: file, Msg: "YAML syntax: " + err.Error()}
	var ye yaml.Error
	if errors.As(err, &ye) {
		e.Msg = "YAML syntax: " + ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			e.Line = tk.Position.Line
		}
	}
	return e
}

// hostFields is one host (or the defaults) as written, with the node of
// every field that was set, for error lines and for defaults.
type hostFields struct {
	host  Host
	nodes map[string]ast.Node
	ok    bool
}

// hostFields reads a host mapping; with isHost false it reads defaults,
// where name and address are not allowed.
func (w *walker) hostFields(n ast.Node, field string, isHost bool, opts Options) hostFields {
	hf := hostFields{nodes: map[string]ast.Node{}}
	pairs, ok := w.mapping(n, field)
	hf.ok = ok
	if isHost && ok && len(pairs) == 0 {
		w.errorf(n, field, "a host needs at least a name")
		hf.ok = false
	}
	errsBefore := len(w.errs)
	h := &hf.host
	for _, p := range pairs {
		f := join(field, p.key)
		hf.nodes[p.key] = p.value
		switch p.key {
		case "name", "address":
			if !isHost {
				w.errorf(p.node, f, "unknown field (a default cannot set %s)", p.key)
				continue
			}
			s, ok := w.str(p.value, f)
			if !ok {
				continue
			}
			if s == "" {
				what := "is empty"
				if p.key == "address" {
					what = "is empty (leave it out to use the host's name)"
				}
				w.errorf(p.value, f, "%s", what)
				continue
			}
			if p.key == "name" {
				h.Name = s
			} else {
				h.Address = s
			}
		case "port":
			h.Port, _ = w.port(p.value, f)
		case "user":
			h.User, _ = w.str(p.value, f)
		case "identity_file":
			s, _ := w.str(p.value, f)
			h.IdentityFile = expandPath(s, opts)
		case "become":
			h.Become, _ = w.boolean(p.value, f)
		case "docker_host":
			h.DockerHost, _ = w.str(p.value, f)
		case "runtime":
			h.Runtime, _ = w.str(p.value, f)
		case "containerd_address":
			h.ContainerdAddress, _ = w.str(p.value, f)
		case "containerd_namespace":
			h.ContainerdNamespace, _ = w.str(p.value, f)
		case "containerd_snapshotter":
			h.ContainerdSnapshotter, _ = w.str(p.value, f)
		case "proxy_jump":
			h.ProxyJump, _ = w.str(p.value, f)
		case "work_dir":
			h.WorkDir, _ = w.str(p.value, f)
		case "node_cache":
			keep, _ := w.boolean(p.value, f)
			h.NoNodeCache = !keep
		case "platform":
			h.Platform, _ = w.str(p.value, f)
		case "max_rate":
			if s, ok := w.str(p.value, f); ok {
				r, err := byterate.Parse(s)
				if err != nil {
					w.errorf(p.value, f, "%v", err)
				}
				h.MaxRate = r
			}
		case "labels":
			labels, _ := w.mapping(p.value, f)
			for _, l := range labels {
				v, ok := w.str(l.value, join(f, l.key))
				if !ok {
					continue
				}
				if h.Labels == nil {
					h.Labels = map[string]string{}
				}
				h.Labels[l.key] = v
			}
		default:
			want := "name, address, port, user, identity_file, become, docker_host, proxy_jump, work_dir, runtime, containerd_address, containerd_namespace, containerd_snapshotter, node_cache, platform, max_rate or labels"
			if !isHost {
				want = want[len("name, address, "):]
			}
			w.errorf(p.node, f, "unknown field (want %s)", want)
		}
	}
	if len(w.errs) > errsBefore {
		hf.ok = false
	}
	return hf
}

// orDefault sets *dst to def unless the host set field itself.
func orDefault[T any](hf *hostFields, field string, dst *T, def T) {
	if _, ok := hf.nodes[field]; !ok {
		*dst = def
	}
}

// applyDefaults fills every field the host did not set from d. It is the
// one place where defaults are applied.
func (hf *hostFields) applyDefaults(d hostFields) {
	h, dh := &hf.host, &d.host
	orDefault(hf, "port", &h.Port, dh.Port)
	orDefault(hf, "user", &h.User, dh.User)
	orDefault(hf, "identity_file", &h.IdentityFile, dh.IdentityFile)
	orDefault(hf, "become", &h.Become, dh.Become)
	orDefault(hf, "docker_host", &h.DockerHost, dh.DockerHost)
	orDefault(hf, "runtime", &h.Runtime, dh.Runtime)
	orDefault(hf, "containerd_address", &h.ContainerdAddress, dh.ContainerdAddress)
	orDefault(hf, "containerd_namespace", &h.ContainerdNamespace, dh.ContainerdNamespace)
	orDefault(hf, "containerd_snapshotter", &h.ContainerdSnapshotter, dh.ContainerdSnapshotter)
	orDefault(hf, "proxy_jump", &h.ProxyJump, dh.ProxyJump)
	orDefault(hf, "work_dir", &h.WorkDir, dh.WorkDir)
	orDefault(hf, "node_cache", &h.NoNodeCache, dh.NoNodeCache)
	orDefault(hf, "platform", &h.Platform, dh.Platform)
	orDefault(hf, "max_rate", &h.MaxRate, dh.MaxRate)
	if len(d.host.Labels) > 0 {
		merged := make(map[string]string, len(d.host.Labels)+len(h.Labels))
		for k, v := range d.host.Labels {
			merged[k] = v
		}
		for k, v := range h.Labels {
			merged[k] = v
		}
		h.Labels = merged
	}
}

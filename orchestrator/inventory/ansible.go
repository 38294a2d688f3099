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
//	ansible_ssh_common_args, ansible_ssh_extra_args,
//	ansible_ssh_args: -J HOP, -o ProxyJump=HOP and
//	-o ProxyCommand="ssh -W %h:%p [-q] [user@]HOP"    -> proxy_jump
//	layercast_docker_host                             -> docker_host
//	layercast_node_cache                              -> node_cache
//	layercast_work_dir                                -> work_dir
//	layercast_platform                                -> platform
//	layercast_max_rate                                -> max_rate
//	layercast_runtime, layercast_containerd_address,
//	layercast_containerd_namespace, layercast_containerd_snapshotter
//	                                                  -> runtime, containerd_*
//
// Refused (the inventory is an error, saying what to change), because
// layercast would not do what they ask: with become, an
// ansible_become_user other than root or an ansible_become_method other
// than sudo; a ProxyCommand other than the ssh -W form above.
//
// Ignored, and listed in Inventory.Ignored (plan, run and the console show
// the list): every other variable (for example ansible_python_interpreter),
// passwords (ansible_password, ansible_become_password: layercast never
// sends a password, it uses keys and `sudo -n`), the other options in
// ansible_ssh_*_args (put them in ~/.ssh/config), ansible_become_user and
// ansible_become_method without become, group priority, host_vars/ and
// group_vars/ directories, dynamic inventory scripts and plugins. Hosts with
// ansible_connection other than ssh, smart or paramiko (for example
// "local") are left out and listed too.
//
// Templates ("{{ ... }}") are not evaluated: one in a variable that layercast
// uses is an error.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/layercast/layercast/internal/byterate"
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

// addHosts adds the hosts a pattern expanded to (names, and the port it
// named, if any) to group, each with vars: the host vars both forms merge
// the same way. The pattern's port is ansible_port unless vars set one.
func (m *ansibleModel) addHosts(names []string, port, group string, vars map[string]ansibleVar, at loc) {
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
		case "layercast_runtime", "layercast_containerd_address", "layercast_containerd_namespace", "layercast_containerd_snapshotter":
			field := strings.TrimPrefix(k, "layercast_")
			if s, ok := use(field, v); ok {
				*map[string]*string{"runtime": &h.Runtime, "containerd_address": &h.ContainerdAddress, "containerd_namespace": &h.ContainerdNamespace, "containerd_snapshotter": &h.ContainerdSnapshotter}[field] = s
			}
		case "layercast_node_cache":
			if s, ok := use("node_cache", v); ok {
				b, err := ansibleBool(s)
				if err != nil {
					m.errorf(v.at, "%v", err)
				}
				h.NoNodeCache = !b
			}
		case "layercast_work_dir":
			if s, ok := use("work_dir", v); ok {
				h.WorkDir = s
			}
		case "layercast_platform":
			if s, ok := use("platform", v); ok {
				h.Platform = s
			}
		case "layercast_max_rate":
			if s, ok := use("max_rate", v); ok {
				r, err := byterate.Parse(s)
				if err != nil {
					m.errorf(v.at, "%v", err)
				}
				h.MaxRate = r
			}
		case "ansible_connection":
		case "ansible_become_user", "ansible_become_method":
			// Checked below, once become is known.
		case "ansible_password", "ansible_ssh_pass", "ansible_ssh_password", "ansible_become_password", "ansible_become_pass", "ansible_sudo_pass":
			d := k + ": layercast never sends passwords (use keys or ssh-agent, and sudo -n)"
			ignored[d] = append(ignored[d], name)
		case "ansible_ssh_args", "ansible_ssh_common_args", "ansible_ssh_extra_args":
			if s, ok := use("proxy_jump", v); ok {
				args, err := parseSSHArgs(s)
				if err != nil {
					m.errorf(v.at, "%q: %v", s, err)
					continue
				}
				if args.jump != "" {
					if h.ProxyJump != "" && h.ProxyJump != args.jump {
						m.errorf(v.at, "jump host %s differs from %s set by another ansible_ssh_*_args; keep one", args.jump, h.ProxyJump)
					}
					h.ProxyJump = args.jump
				}
				for _, a := range args.ignored {
					d := fmt.Sprintf("%s: %s: not used (layercast reaches hosts as ~/.ssh/config says)", k, a)
					ignored[d] = append(ignored[d], name)
				}
			}
		default:
			d := k + ": not used by layercast"
			ignored[d] = append(ignored[d], name)
		}
	}
	m.checkBecome(name, h.Become, vars, ignored)
	return h, at
}

// checkBecome refuses what layercast cannot do as asked: become another
// user than root, or become other than through sudo. Without become the
// two variables change nothing and are only listed.
func (m *ansibleModel) checkBecome(name string, become bool, vars map[string]ansibleVar, ignored map[string][]string) {
	if v, ok := vars["ansible_become_user"]; ok && v.value != "" && v.value != "root" {
		if become {
			m.errorf(v.at, "%q: layercast runs the node as root through sudo -n; set ansible_become_user=root or leave it out", v.value)
		} else {
			d := "ansible_become_user: not used without ansible_become"
			ignored[d] = append(ignored[d], name)
		}
	}
	if v, ok := vars["ansible_become_method"]; ok && v.value != "" && v.value != "sudo" {
		if become {
			m.errorf(v.at, "%q: layercast becomes root only through sudo -n; set ansible_become_method=sudo or leave it out", v.value)
		} else {
			d := "ansible_become_method: not used without ansible_become"
			ignored[d] = append(ignored[d], name)
		}
	}
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

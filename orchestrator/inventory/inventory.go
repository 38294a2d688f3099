// Package inventory reads the list of hosts a job may reach: layercast's own
// YAML inventory (see inventory.example.yaml at the top of the repository)
// or an Ansible inventory in INI or YAML form.
//
// Every problem is reported as an *Error that names the file, the line and
// the field, for example
//
//	inventory.yaml:12: hosts[3].port: "abc" is not a port number
//
// Parse reports all problems it finds at once, joined with errors.Join.
//
// A Host keeps only what the inventory says. Fields the inventory leaves
// empty (Address, Port, User, IdentityFile) are filled later, when the fleet
// package dials the host, from ~/.ssh/config and then from OpenSSH's own
// defaults (address = name, port 22, the local user, ~/.ssh/id_*). That is
// what lets ~/.ssh/config map a host name the inventory does not spell out.
package inventory

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Format is the kind of inventory file.
type Format string

const (
	FormatAuto        Format = ""             // detect from extension and content
	FormatLayercast   Format = "layercast"    // layercast YAML
	FormatAnsibleINI  Format = "ansible-ini"  // Ansible INI inventory
	FormatAnsibleYAML Format = "ansible-yaml" // Ansible YAML inventory
)

// ErrInvalid is wrapped by every error Load and Parse return, so callers can
// tell a bad inventory (exit 2, before any host is touched) from anything else.
var ErrInvalid = errors.New("invalid inventory")

// Error is one problem in an inventory file.
type Error struct {
	File  string
	Line  int    // 1-based; 0 when the problem has no single line
	Field string // e.g. "hosts[3].port"; empty for the whole file
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Field))
	}
	b.WriteString(": ")
	b.WriteString(oneLine(e.Msg))
	return b.String()
}

// oneLine keeps every error on one line, whatever the input held.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(strings.TrimSpace(s))
}

// Is makes errors.Is(err, ErrInvalid) true for every inventory error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Inventory is a parsed inventory.
type Inventory struct {
	// Path is the file it was read from, as given.
	Path   string
	Format Format
	// KnownHosts is the known_hosts file for these hosts, absolute; empty
	// means the user's ~/.ssh/known_hosts.
	KnownHosts string
	// Hosts in file order.
	Hosts []Host
	// Groups maps a group name to its host names, in inventory order.
	Groups map[string][]string
	// Ignored says, one line each, what an Ansible inventory holds that
	// layercast does not use. Empty for layercast inventories.
	Ignored []string
}

// Options tune Parse.
type Options struct {
	// Format forces a format; FormatAuto detects it.
	Format Format
	// Dir is the directory relative paths are taken from; default the
	// directory of the file name passed to Parse.
	Dir string
	// Home replaces $HOME when expanding ~; default os.UserHomeDir.
	Home string
}

// Load reads and parses the inventory at path.
func Load(path string) (*Inventory, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read inventory: %v", unwrapPath(err))}
	}
	return Parse(path, data, Options{})
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse parses an inventory held in data; name is the file name used in
// errors and, unless opts.Dir is set, the base of relative paths.
func Parse(name string, data []byte, opts Options) (*Inventory, error) {
	if opts.Dir == "" {
		opts.Dir = filepath.Dir(name)
	}
	if opts.Home == "" {
		opts.Home, _ = os.UserHomeDir()
	}
	format := opts.Format
	if format == FormatAuto {
		format = Detect(name, data)
	}
	var (
		inv  *Inventory
		errs []*Error
	)
	switch format {
	case FormatLayercast:
		inv, errs = parseLayercast(name, data, opts)
	case FormatAnsibleINI:
		inv, errs = parseAnsibleINI(name, data, opts)
	case FormatAnsibleYAML:
		inv, errs = parseAnsibleYAML(name, data, opts)
	default:
		return nil, &Error{File: name, Msg: fmt.Sprintf("unknown inventory format %q", format)}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	inv.Path = name
	inv.Format = format
	return inv, nil
}

func joinErrors(errs []*Error) error {
	slices.SortStableFunc(errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	var out []error
	seen := map[Error]bool{}
	for _, e := range errs {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// Detect guesses the format of an inventory: layercast YAML has a top-level
// `hosts:` list (or `defaults:`/`known_hosts:`); an Ansible YAML inventory has
// groups at the top level; anything that is not a YAML mapping, or a file
// ending in .ini, .cfg or having a `[section]` line first, is Ansible INI.
func Detect(name string, data []byte) Format {
	ext := strings.ToLower(filepath.Ext(name))
	if ext == ".ini" || ext == ".cfg" {
		return FormatAnsibleINI
	}
	first := firstContentLine(data)
	if ext != ".yaml" && ext != ".yml" && ext != ".json" {
		if strings.HasPrefix(first, "[") && strings.HasSuffix(first, "]") || !strings.Contains(first, ":") {
			return FormatAnsibleINI
		}
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		s := string(bytes.TrimRight(l, " \t\r"))
		if s == "" || s[0] == ' ' || s[0] == '\t' || s[0] == '#' || s[0] == '-' {
			continue
		}
		key, _, found := strings.Cut(s, ":")
		if !found {
			continue
		}
		switch strings.Trim(key, `"'`) {
		case "hosts", "defaults", "known_hosts":
			return FormatLayercast
		}
	}
	if strings.HasPrefix(first, "[") && strings.HasSuffix(first, "]") {
		return FormatAnsibleINI
	}
	if strings.Contains(first, ":") {
		return FormatAnsibleYAML
	}
	return FormatLayercast
}

func firstContentLine(data []byte) string {
	for _, l := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(l))
		if s == "" || s[0] == '#' || s[0] == ';' || s == "---" {
			continue
		}
		return s
	}
	return ""
}

// expandPath makes p absolute: ~ is opts.Home, relative is from opts.Dir.
func expandPath(p string, opts Options) string {
	if p == "" {
		return ""
	}
	if p == "~" {
		return opts.Home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(opts.Home, rest)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(opts.Dir, p)
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return filepath.Clean(p)
}

// Host returns the host called name.
func (inv *Inventory) Host(name string) (Host, bool) {
	for _, h := range inv.Hosts {
		if h.Name == name {
			return h, true
		}
	}
	return Host{}, false
}

// Select returns the hosts named in hosts plus the members of groups, in
// inventory order, each once. Both empty selects every host. An unknown
// host or group is an error that names it. The group "all" always exists.
func (inv *Inventory) Select(hosts, groups []string) ([]Host, error) {
	if len(hosts) == 0 && len(groups) == 0 {
		return slices.Clone(inv.Hosts), nil
	}
	want := map[string]bool{}
	var errs []error
	for _, n := range hosts {
		if _, ok := inv.Host(n); !ok {
			errs = append(errs, fmt.Errorf("%s: unknown host %q%s", inv.Path, n, suggest(n, inv.hostNames())))
			continue
		}
		want[n] = true
	}
	for _, g := range groups {
		members, ok := inv.Groups[g]
		switch {
		case ok:
			for _, m := range members {
				want[m] = true
			}
		case g == "all":
			for _, h := range inv.Hosts {
				want[h.Name] = true
			}
		default:
			errs = append(errs, fmt.Errorf("%s: unknown group %q%s", inv.Path, g, suggest(g, slices.Sorted(mapKeys(inv.Groups)))))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("select hosts: %w", errors.Join(errs...))
	}
	var out []Host
	for _, h := range inv.Hosts {
		if want[h.Name] {
			out = append(out, h)
		}
	}
	return out, nil
}

func (inv *Inventory) hostNames() []string {
	names := make([]string, len(inv.Hosts))
	for i, h := range inv.Hosts {
		names[i] = h.Name
	}
	return names
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// suggest lists the known names (up to 8) for an error message.
func suggest(_ string, known []string) string {
	if len(known) == 0 {
		return " (the inventory defines none)"
	}
	if len(known) > 8 {
		return fmt.Sprintf(" (known: %s, ... %d more)", strings.Join(known[:8], ", "), len(known)-8)
	}
	return " (known: " + strings.Join(known, ", ") + ")"
}

// loc is where a host's field got its value: a line and a field path.
type loc struct {
	line int
	path string
}

// finish applies group membership to hosts and checks every host; it is the
// last step of every format's parser. locate says where host i's field was
// set (its own line, a defaults line or a group's vars).
func finish(inv *Inventory, file string, locate func(i int, field string) loc) []*Error {
	var errs []*Error
	member := map[string][]string{}
	for g, hs := range inv.Groups {
		for _, h := range hs {
			member[h] = append(member[h], g)
		}
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		h.Groups = slices.Sorted(slices.Values(member[h.Name]))
		h.Source = fmt.Sprintf("%s:%d", file, locate(i, "").line)
		if err := h.Validate(); err != nil {
			for _, fe := range fieldErrors(err) {
				l := locate(i, fe.Field)
				errs = append(errs, &Error{File: file, Line: l.line, Field: l.path, Msg: fe.Msg})
			}
		}
	}
	return errs
}

func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []*FieldError{fe}
	}
	return []*FieldError{{Msg: err.Error()}}
}

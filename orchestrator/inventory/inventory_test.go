package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fixture makes a directory with key files and returns parse options that
// resolve relative paths and ~ inside it.
func fixture(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	for _, p := range []string{filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts"), filepath.Join(home, ".ssh", "id_ed25519")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("key"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return Options{Dir: dir, Home: home}
}

func mustParse(t *testing.T, name, src string, opts Options) *Inventory {
	t.Helper()
	inv, err := Parse(name, []byte(src), opts)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return inv
}

const sample = `known_hosts: ./known_hosts
defaults:
  user: root
  port: 2222
  identity_file: ./id_ed25519
  become: true
  labels: {site: lab}
hosts:
  - name: h01
    address: 10.99.0.11
    port: 22
    user: deploy
    become: false
    labels: {rack: r1}
  - name: h02
    identity_file: ~/.ssh/id_ed25519
  - name: "03"
groups:
  rack1: [h01, h02]
`

func TestParse_AppliesDefaultsOnlyToUnsetFields(t *testing.T) {
	opts := fixture(t)
	inv := mustParse(t, "inventory.yaml", sample, opts)
	if inv.Format != FormatLayercast {
		t.Errorf("format %q", inv.Format)
	}
	if want := filepath.Join(opts.Dir, "known_hosts"); inv.KnownHosts != want {
		t.Errorf("known_hosts %q, want %q", inv.KnownHosts, want)
	}
	want := []Host{
		{Name: "h01", Address: "10.99.0.11", Port: 22, User: "deploy", IdentityFile: filepath.Join(opts.Dir, "id_ed25519"),
			Become: false, Labels: map[string]string{"site": "lab", "rack": "r1"}, Source: "inventory.yaml:9", Groups: []string{"rack1"}},
		{Name: "h02", Port: 2222, User: "root", IdentityFile: filepath.Join(opts.Home, ".ssh", "id_ed25519"),
			Become: true, Labels: map[string]string{"site": "lab"}, Source: "inventory.yaml:15", Groups: []string{"rack1"}},
		{Name: "03", Port: 2222, User: "root", IdentityFile: filepath.Join(opts.Dir, "id_ed25519"),
			Become: true, Labels: map[string]string{"site": "lab"}, Source: "inventory.yaml:17"},
	}
	if !reflect.DeepEqual(inv.Hosts, want) {
		t.Errorf("hosts\n got %+v\nwant %+v", inv.Hosts, want)
	}
}

func TestParse_ErrorsNameFileLineAndField(t *testing.T) {
	opts := fixture(t)
	cases := []struct {
		name, src, want string
	}{
		{"bad port", "hosts:\n  - name: a\n  - name: b\n    port: abc\n", `inv.yaml:4: hosts[1].port: "abc" is not a port number`},
		{"port out of range", "hosts:\n  - name: a\n    port: 70000\n", `inv.yaml:3: hosts[0].port: "70000" is not a port number`},
		{"unknown host field", "hosts:\n  - name: a\n    adress: x\n", `inv.yaml:3: hosts[0].adress: unknown field`},
		{"unknown top field", "hosts:\n  - name: a\nhost: []\n", `inv.yaml:3: host: unknown field`},
		{"unknown defaults field", "defaults:\n  name: x\nhosts:\n  - name: a\n", `inv.yaml:2: defaults.name: unknown field`},
		{"duplicate host", "hosts:\n  - name: a\n  - name: b\n  - name: a\n", `inv.yaml:4: hosts[2].name: duplicate host "a" (first defined on line 2)`},
		{"unknown group member", "hosts:\n  - name: a\ngroups:\n  g: [a, zz]\n", `inv.yaml:4: groups.g[1]: unknown host "zz"`},
		{"empty address", "hosts:\n  - name: a\n    address: \"\"\n", `inv.yaml:3: hosts[0].address: is empty`},
		{"bad become", "hosts:\n  - name: a\n    become: sometimes\n", `inv.yaml:3: hosts[0].become: "sometimes" is not true or false`},
		{"missing identity file", "hosts:\n  - name: a\n    identity_file: ./nope\n", `inv.yaml:3: hosts[0].identity_file: ` + filepath.Join(opts.Dir, "nope") + ` does not exist`},
		{"missing identity file from defaults", "defaults:\n  identity_file: ./nope\nhosts:\n  - name: a\n", `inv.yaml:2: defaults.identity_file: ` + filepath.Join(opts.Dir, "nope") + ` does not exist`},
		{"no name", "hosts:\n  - address: x\n", `inv.yaml:2: hosts[0]: a host needs a name`},
		{"hosts not a list", "hosts:\n  name: a\n", `inv.yaml:2: hosts: want a list`},
		{"labels not a map", "hosts:\n  - name: a\n    labels: [x]\n", `inv.yaml:3: hosts[0].labels: want a mapping`},
		{"duplicate key", "hosts:\n  - name: a\n    port: 22\n    port: 23\n", `inv.yaml:4: YAML syntax: mapping key "port" already defined`},
		{"syntax", "hosts:\n  - name: a\n   port: [\n", `inv.yaml:3: YAML syntax`},
		{"no hosts", "defaults:\n  user: x\nhosts: []\n", `inv.yaml:3: hosts: the inventory lists no hosts`},
		{"comma in name", "hosts:\n  - name: a,b\n", `inv.yaml:2: hosts[0].name: "a,b": a host name may not contain`},
		{"bad docker_host", "hosts:\n  - name: a\n    docker_host: /var/run/docker.sock\n", `inv.yaml:3: hosts[0].docker_host: "/var/run/docker.sock": want unix:///path`},
		{"unknown alias", "hosts:\n  - name: *nope\n", `inv.yaml:2: hosts[0].name: unknown alias *nope`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := Parse("inv.yaml", []byte(c.src), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatLayercast})
			if err == nil {
				t.Fatalf("no error; got %+v", inv)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(err, ErrInvalid) is false for %v", err)
			}
		})
	}
}

func TestParse_ReportsEveryErrorOnce(t *testing.T) {
	opts := fixture(t)
	src := "defaults:\n  identity_file: ./nope\nhosts:\n  - name: a\n    port: x\n  - name: b\n  - name: c\n"
	_, err := Parse("inv.yaml", []byte(src), opts)
	if err == nil {
		t.Fatal("no error")
	}
	// The port error stops before validation; fix it and the missing key
	// (shared by three hosts through defaults) is reported once.
	if got := strings.Count(err.Error(), "\n") + 1; got != 1 || !strings.Contains(err.Error(), "hosts[0].port") {
		t.Errorf("got %d errors: %v", got, err)
	}
	_, err = Parse("inv.yaml", []byte(strings.Replace(src, "port: x", "port: 22", 1)), opts)
	if err == nil || strings.Count(err.Error(), "does not exist") != 1 {
		t.Errorf("want one missing-key error, got %v", err)
	}
}

func TestParse_AnchorsAndMergeKeys(t *testing.T) {
	opts := fixture(t)
	src := `base: &base
  user: ops
  port: 2200
hosts:
  - <<: *base
    name: a
  - <<: *base
    name: b
    port: 22
`
	// A top-level key that is not in the schema is still an error, even as
	// an anchor holder.
	if _, err := Parse("inv.yaml", []byte(src), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatLayercast}); err == nil || !strings.Contains(err.Error(), "inv.yaml:1: base: unknown field") {
		t.Fatalf("want unknown field base, got %v", err)
	}
	src = `defaults: &d
  user: ops
hosts:
  - name: a
    labels: &l {x: "1"}
  - <<: {port: 2200, user: merged}
    name: b
    labels: *l
`
	inv := mustParse(t, "inv.yaml", src, Options{Dir: opts.Dir, Home: opts.Home, Format: FormatLayercast})
	if h := inv.Hosts[1]; h.Port != 2200 || h.User != "merged" || h.Labels["x"] != "1" {
		t.Errorf("host b = %+v", h)
	}
	if h := inv.Hosts[0]; h.User != "ops" {
		t.Errorf("host a = %+v", h)
	}
}

func TestSelect(t *testing.T) {
	opts := fixture(t)
	inv := mustParse(t, "inventory.yaml", sample, opts)
	names := func(hs []Host) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.Name)
		}
		return out
	}
	for _, c := range []struct {
		hosts, groups, want []string
	}{
		{nil, nil, []string{"h01", "h02", "03"}},
		{[]string{"03"}, nil, []string{"03"}},
		{[]string{"03", "h01"}, []string{"rack1"}, []string{"h01", "h02", "03"}},
		{nil, []string{"all"}, []string{"h01", "h02", "03"}},
	} {
		got, err := inv.Select(c.hosts, c.groups)
		if err != nil {
			t.Fatalf("Select(%v, %v): %v", c.hosts, c.groups, err)
		}
		if !slices.Equal(names(got), c.want) {
			t.Errorf("Select(%v, %v) = %v, want %v", c.hosts, c.groups, names(got), c.want)
		}
	}
	_, err := inv.Select([]string{"h01", "h99"}, []string{"rack9"})
	if err == nil || !strings.Contains(err.Error(), `unknown host "h99"`) || !strings.Contains(err.Error(), `unknown group "rack9"`) {
		t.Errorf("want both unknowns named, got %v", err)
	}
}

func TestHost_StringIsSafe(t *testing.T) {
	if got := (Host{}).String(); got != "(unnamed)" {
		t.Errorf("zero host: %q", got)
	}
	h := Host{Name: "h01", Address: "10.0.0.1", User: "deploy", Port: 2222, IdentityFile: "/secret/key"}
	if got := h.String(); got != "h01 (deploy@10.0.0.1:2222)" {
		t.Errorf("got %q", got)
	}
}

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		name, src string
		want      Format
	}{
		{"inv.yaml", sample, FormatLayercast},
		{"inventory", sample, FormatLayercast},
		{"hosts.ini", "[web]\nh01\n", FormatAnsibleINI},
		{"hosts", "# lab\n[web]\nh01 ansible_host=1.2.3.4\n", FormatAnsibleINI},
		{"hosts", "h01\nh02\n", FormatAnsibleINI},
		{"hosts.yml", "all:\n  hosts:\n    h01:\n", FormatAnsibleYAML},
		{"hosts", "---\nall:\n  children:\n    web:\n      hosts: {h01: }\n", FormatAnsibleYAML},
	} {
		if got := Detect(c.name, []byte(c.src)); got != c.want {
			t.Errorf("Detect(%s, %q) = %s, want %s", c.name, c.src, got, c.want)
		}
	}
}

// TestExampleInventory_ParsesAndDocumentsEveryField keeps the example at the
// top of the repository honest: it parses, and it mentions every field.
func TestExampleInventory_ParsesAndDocumentsEveryField(t *testing.T) {
	path := filepath.Join("..", "..", "inventory.example.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts := fixture(t)
	inv := mustParse(t, "inventory.example.yaml", string(data), opts)
	if len(inv.Hosts) != 4 || len(inv.Groups["rack1"]) != 2 || inv.Hosts[3].Runtime != "containerd" {
		t.Errorf("example parsed to %+v", inv)
	}
	typ := reflect.TypeOf(Host{})
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ",")
		if tag == "-" {
			continue
		}
		if !strings.Contains(string(data), "\n    "+tag+":") && !strings.Contains(string(data), "\n  - "+tag+":") {
			t.Errorf("inventory.example.yaml does not show host field %q", tag)
		}
	}
	for _, f := range []string{"known_hosts:", "defaults:", "groups:"} {
		if !strings.Contains(string(data), "\n"+f) {
			t.Errorf("example lacks %s", f)
		}
	}
}

func TestLoad_UnreadableFileNamesIt(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if err == nil || !strings.Contains(err.Error(), "missing.yaml: cannot read inventory") || !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v", err)
	}
}

package inventory

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const labINI = `# the lab
bastion ansible_connection=local

[web]
h01 ansible_host=10.99.0.11 ansible_port=2222
h[02:03] ansible_host=10.99.0.2 ansible_python_interpreter=/usr/bin/python3

[db]
db-[a:b].lab:2200 ansible_user="dba" ansible_python_interpreter="/usr/bin/env python3" # comment

[web:vars]
ansible_user=deploy
ansible_become=yes

[lab:children]
web
db

[lab:vars]
ansible_user=ops
ansible_ssh_private_key_file=./id_ed25519
ansible_password=hunter2
layercast_docker_host=unix:///run/docker.sock

[all:vars]
ansible_port=22
`

func TestParseAnsibleINI_GroupsChildrenAndVarPrecedence(t *testing.T) {
	opts := fixture(t)
	inv := mustParse(t, "hosts", labINI, opts)
	if inv.Format != FormatAnsibleINI {
		t.Fatalf("format %s", inv.Format)
	}
	key := filepath.Join(opts.Dir, "id_ed25519")
	want := map[string]Host{
		// web:vars (child) beats lab:vars (parent); host vars beat both.
		"h01":      {Name: "h01", Address: "10.99.0.11", Port: 2222, User: "deploy", Become: true, IdentityFile: key, DockerHost: "unix:///run/docker.sock"},
		"h02":      {Name: "h02", Address: "10.99.0.2", Port: 22, User: "deploy", Become: true, IdentityFile: key, DockerHost: "unix:///run/docker.sock"},
		"h03":      {Name: "h03", Address: "10.99.0.2", Port: 22, User: "deploy", Become: true, IdentityFile: key, DockerHost: "unix:///run/docker.sock"},
		"db-a.lab": {Name: "db-a.lab", Port: 2200, User: "dba", IdentityFile: key, DockerHost: "unix:///run/docker.sock"},
		"db-b.lab": {Name: "db-b.lab", Port: 2200, User: "dba", IdentityFile: key, DockerHost: "unix:///run/docker.sock"},
	}
	var names []string
	for _, h := range inv.Hosts {
		names = append(names, h.Name)
		w, ok := want[h.Name]
		if !ok {
			t.Errorf("unexpected host %s", h.Name)
			continue
		}
		h.Source, h.Groups, h.Labels = "", nil, nil
		if !reflect.DeepEqual(h, w) {
			t.Errorf("host %s\n got %+v\nwant %+v", h.Name, h, w)
		}
	}
	if !slices.Equal(names, []string{"h01", "h02", "h03", "db-a.lab", "db-b.lab"}) {
		t.Errorf("hosts %v (bastion has ansible_connection=local and must be left out)", names)
	}
	if got := inv.Groups["lab"]; !slices.Equal(got, []string{"h01", "h02", "h03", "db-a.lab", "db-b.lab"}) {
		t.Errorf("group lab = %v", got)
	}
	if got := inv.Groups["web"]; !slices.Equal(got, []string{"h01", "h02", "h03"}) {
		t.Errorf("group web = %v", got)
	}
	ignored := strings.Join(inv.Ignored, "\n")
	for _, w := range []string{"ansible_connection=local is not SSH (bastion)", "ansible_password: layercast never sends passwords", "ansible_python_interpreter: not used by layercast (h02, h03, db-a.lab, db-b.lab)"} {
		if !strings.Contains(ignored, w) {
			t.Errorf("Ignored lacks %q:\n%s", w, ignored)
		}
	}
	sel, err := inv.Select(nil, []string{"db"})
	if err != nil || len(sel) != 2 {
		t.Errorf("select db: %v %v", sel, err)
	}
}

func TestParseAnsibleINI_Errors(t *testing.T) {
	opts := fixture(t)
	for _, c := range []struct{ name, src, want string }{
		{"bad port", "[web]\nh01 ansible_port=abc\n", `hosts:2: h01 ansible_port: "abc" is not a port number`},
		{"bad group port", "[web]\nh01\n[web:vars]\nansible_port=0\n", `hosts:4: [web:vars] ansible_port: "0" is not a port number`},
		{"bad become", "[web]\nh01 ansible_become=maybe\n", `hosts:2: h01 ansible_become: "maybe" is not true or false`},
		{"template", "[web]\nh01 ansible_host=\"{{ lookup('x') }}\"\n", `templates are not evaluated`},
		{"missing key", "[web]\nh01 ansible_ssh_private_key_file=./nope\n", `hosts:2: h01 ansible_ssh_private_key_file: ` + filepath.Join(opts.Dir, "nope") + " does not exist"},
		{"bad header", "[web\nh01\n[a b]\n", `hosts:3: [a b]: not a section header`},
		{"cycle", "[a:children]\nb\n[b:children]\na\n[a]\nh\n", `children form a cycle`},
		{"huge range", "[web]\nh[0:99999999]\n", `more than 10000 hosts`},
		{"backwards range", "[web]\nh[9:1]\n", `is not a rising number range`},
		{"unterminated quote", "[web]\nh01 ansible_user=\"x\n", `hosts:2: [web]: unterminated " quote`},
		{"no hosts", "[web:vars]\nx=1\n", `the inventory lists no hosts`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("hosts", []byte(c.src), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatAnsibleINI})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestParseAnsibleYAML(t *testing.T) {
	opts := fixture(t)
	src := `all:
  vars:
    ansible_user: ops
  hosts:
    lone:
  children:
    web:
      vars:
        ansible_become: true
      hosts:
        h01:
          ansible_host: 10.99.0.11
          ansible_port: 2222
        h[02:03]:
    lab:
      children:
        web:
        db:
          hosts:
            db1:
              ansible_user: dba
              ansible_ssh_private_key_file: ~/.ssh/id_ed25519
`
	inv := mustParse(t, "hosts.yml", src, opts)
	if inv.Format != FormatAnsibleYAML {
		t.Fatalf("format %s", inv.Format)
	}
	got := map[string]Host{}
	for _, h := range inv.Hosts {
		got[h.Name] = h
	}
	if h := got["h01"]; h.Address != "10.99.0.11" || h.Port != 2222 || h.User != "ops" || !h.Become {
		t.Errorf("h01 = %+v", h)
	}
	if h := got["h03"]; h.User != "ops" || !h.Become {
		t.Errorf("h03 = %+v", h)
	}
	if h := got["db1"]; h.User != "dba" || h.Become || h.IdentityFile != filepath.Join(opts.Home, ".ssh", "id_ed25519") {
		t.Errorf("db1 = %+v", h)
	}
	if h := got["lone"]; h.User != "ops" {
		t.Errorf("lone = %+v", h)
	}
	if g := inv.Groups["lab"]; !slices.Equal(g, []string{"h01", "h02", "h03", "db1"}) {
		t.Errorf("lab = %v", g)
	}

	_, err := Parse("hosts.yml", []byte("all:\n  hosts:\n    h01:\n      ansible_port: nope\n"), opts)
	if err == nil || !strings.Contains(err.Error(), `hosts.yml:4: all.hosts.h01.ansible_port: "nope" is not a port number`) {
		t.Errorf("got %v", err)
	}
	_, err = Parse("hosts.yml", []byte("all:\n  host:\n    h01:\n"), opts)
	if err == nil || !strings.Contains(err.Error(), `hosts.yml:2: all.host: unknown field`) {
		t.Errorf("got %v", err)
	}
}

func TestExpandHostPattern(t *testing.T) {
	for _, c := range []struct {
		in    string
		names []string
		port  string
	}{
		{"web[01:03].lab", []string{"web01.lab", "web02.lab", "web03.lab"}, ""},
		{"h[1:5:2]", []string{"h1", "h3", "h5"}, ""},
		{"r[a:b]n[1:2]", []string{"ra" + "n1", "ran2", "rbn1", "rbn2"}, ""},
		{"host:2222", []string{"host"}, "2222"},
		{"h[1:2]:2222", []string{"h1", "h2"}, "2222"},
		{"fe80::1", []string{"fe80::1"}, ""},
	} {
		names, port, err := expandHostPattern(c.in)
		if err != nil || !slices.Equal(names, c.names) || port != c.port {
			t.Errorf("expandHostPattern(%q) = %v, %q, %v; want %v, %q", c.in, names, port, err, c.names, c.port)
		}
	}
}

func TestParseAnsible_JumpHostsFromSSHArgsBecomeProxyJump(t *testing.T) {
	opts := fixture(t)
	src := `[web]
h01 ansible_ssh_common_args='-J deploy@gw:2222'
h02 ansible_ssh_common_args='-o ProxyJump=gw1,gw2 -o StrictHostKeyChecking=no'
h03 ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -q ops@bastion.example"'
h04 ansible_ssh_extra_args="-oProxyCommand='ssh -p 2200 -W %h:%p gw'" ansible_ssh_common_args="-C"
h05 ansible_ssh_common_args="-o 'ProxyJump none'"
`
	inv, err := Parse("hosts", []byte(src), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatAnsibleINI})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"h01": "deploy@gw:2222", "h02": "gw1,gw2", "h03": "ops@bastion.example", "h04": "gw:2200", "h05": ""}
	for _, h := range inv.Hosts {
		if h.ProxyJump != want[h.Name] {
			t.Errorf("%s: ProxyJump %q, want %q", h.Name, h.ProxyJump, want[h.Name])
		}
	}
	ignored := strings.Join(inv.Ignored, "\n")
	for _, w := range []string{"ansible_ssh_common_args: -o StrictHostKeyChecking=no: not used", "ansible_ssh_common_args: -C: not used (layercast reaches hosts as ~/.ssh/config says) (h04)"} {
		if !strings.Contains(ignored, w) {
			t.Errorf("Ignored lacks %q:\n%s", w, ignored)
		}
	}
}

func TestParseAnsible_RefusesWhatLayercastWouldNotDo(t *testing.T) {
	opts := fixture(t)
	for _, c := range []struct{ name, src, want string }{
		{"become another user", "[web]\nh01 ansible_become=yes ansible_become_user=deploy\n",
			`hosts:2: h01 ansible_become_user: "deploy": layercast runs the node as root through sudo -n; set ansible_become_user=root or leave it out`},
		{"become through su", "[web]\nh01\n[web:vars]\nansible_become=true\nansible_become_method=su\n",
			`hosts:5: [web:vars] ansible_become_method: "su": layercast becomes root only through sudo -n; set ansible_become_method=sudo or leave it out`},
		{"proxy command", "[web]\nh01 ansible_ssh_common_args='-o ProxyCommand=\"nc -X 5 -x proxy:1080 %h %p\"'\n",
			`ProxyCommand "nc -X 5 -x proxy:1080 %h %p" is not supported: use -J [user@]jumphost[:port]`},
		{"two jump hosts", "[web]\nh01 ansible_ssh_common_args='-J a -o ProxyJump=b'\n", `names two jump hosts, a and b`},
		{"unbalanced quote", "[web]\nh01 ansible_ssh_common_args=\"-o 'ProxyJump a\"\n", `unbalanced single quote`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("hosts", []byte(c.src), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatAnsibleINI})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v\nwant %s", err, c.want)
			}
			if err != nil && strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("more than one line: %v", err)
			}
		})
	}
	// Without become, the two become variables change nothing: listed.
	inv, err := Parse("hosts", []byte("[web]\nh01 ansible_become_user=deploy ansible_become_method=su\n"), Options{Dir: opts.Dir, Home: opts.Home, Format: FormatAnsibleINI})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(inv.Ignored, "\n"); !strings.Contains(got, "ansible_become_user: not used without ansible_become (h01)") || !strings.Contains(got, "ansible_become_method: not used without ansible_become") {
		t.Errorf("Ignored: %s", got)
	}
}

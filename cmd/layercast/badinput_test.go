package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A listener standing in for every host: a config error must be reported
// before anything connects to it.
type hostTrap struct {
	ln    net.Listener
	dials atomic.Int64
}

func newHostTrap(t *testing.T) *hostTrap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostTrap{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.dials.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return h
}

func (h *hostTrap) port() string { return strconv.Itoa(h.ln.Addr().(*net.TCPAddr).Port) }

// badInputDir writes a key, a known_hosts file and a report with no
// failed host next to the inventories of the cases.
func badInputDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"id_ed25519":     string(pem.EncodeToMemory(block)),
		"garbage_key":    "this is not a private key\n",
		"known_hosts":    "",
		"ok-report.json": `{"job_id":"x","hosts":[{"host":"h01","state":"done"}]}`,
		"not-json.json":  "hosts: [h01]\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "keydir"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// goodInventory is valid; every case breaks one thing in it.
const goodInventory = `known_hosts: ./known_hosts
defaults:
  user: root
  port: PORT
  identity_file: ./id_ed25519
hosts:
  - name: h01
    address: 127.0.0.1
  - name: h02
    address: 127.0.0.1
    labels: {rack: r1}
groups:
  web: [h01, h02]
`

type badInputCase struct {
	name string
	// edit turns goodInventory into the case's inventory; nil keeps it.
	edit func(string) string
	// args follow "run -i INVENTORY"; default: the image.
	args []string
	want []string
}

func replace(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			return editFailed + old
		}
		return strings.Replace(s, old, new, 1)
	}
}

// editFailed marks an edit that found nothing to replace.
const editFailed = "EDIT FAILED: "

func edits(fs ...func(string) string) func(string) string {
	return func(s string) string {
		for _, f := range fs {
			if s = f(s); strings.HasPrefix(s, editFailed) {
				return s
			}
		}
		return s
	}
}

// onlyH02 keeps the group from naming h01, for cases that rename or drop it.
var onlyH02 = replace("web: [h01, h02]", "web: [h02]")

func whole(text string) func(string) string { return func(string) string { return text } }

var badInputCases = []badInputCase{
	{name: "inventory file missing", edit: nil, args: []string{"-i", "MISSING", "app:v1"}, want: []string{"missing.yaml", "cannot read inventory", "no such file"}},
	{name: "empty inventory", edit: whole(""), want: []string{"inventory.yaml", "empty"}},
	{name: "not YAML", edit: whole("hosts: [h01\n  - x: :\n"), want: []string{"inventory.yaml:", "YAML syntax"}},
	{name: "two YAML documents", edit: func(s string) string { return s + "---\nhosts: []\n" }, want: []string{"inventory.yaml:", "more than one YAML document"}},
	{name: "unknown top-level field", edit: replace("hosts:\n", "host:\n  - name: x\nhosts:\n"), want: []string{"inventory.yaml:6", "host", "unknown field"}},
	{name: "known_hosts empty", edit: replace("known_hosts: ./known_hosts", `known_hosts: ""`), want: []string{"inventory.yaml:1", "known_hosts", "is empty"}},
	{name: "known_hosts not a string", edit: replace("known_hosts: ./known_hosts", "known_hosts: [a, b]"), want: []string{"inventory.yaml:1", "known_hosts"}},
	{name: "defaults not a mapping", edit: replace("defaults:\n  user: root\n  port: PORT\n  identity_file: ./id_ed25519\n", "defaults: root\n"), want: []string{"inventory.yaml:2", "defaults"}},
	{name: "default sets a name", edit: replace("  user: root\n", "  user: root\n  name: everyone\n"), want: []string{"inventory.yaml:4", "defaults.name", "a default cannot set name"}},
	{name: "no hosts", edit: whole("known_hosts: ./known_hosts\nhosts: []\n"), want: []string{"inventory.yaml:2", "lists no hosts"}},
	{name: "hosts not a list", edit: whole("known_hosts: ./known_hosts\nhosts: h01\n"), want: []string{"inventory.yaml:2", "hosts", "want a list"}},
	{name: "host without a name", edit: edits(onlyH02, replace("  - name: h01\n    address: 127.0.0.1\n", "  - address: 127.0.0.1\n")), want: []string{"inventory.yaml:7", "hosts[0]", "needs a name"}},
	{name: "host name with a space", edit: edits(onlyH02, replace("name: h01", `name: "h 01"`)), want: []string{"inventory.yaml:7", "hosts[0].name", "may not contain spaces"}},
	{name: "host name starts with a dash", edit: edits(onlyH02, replace("name: h01", `name: "-oProxyCommand=x"`)), want: []string{"inventory.yaml:7", "hosts[0].name", "start with '-'"}},
	{name: "duplicate host", edit: edits(replace("web: [h01, h02]", "web: [h01]"), replace("name: h02", "name: h01")), want: []string{"inventory.yaml:9", "hosts[1].name", `duplicate host "h01"`, "line 7"}},
	{name: "address with a user", edit: replace("    address: 127.0.0.1\n  - name: h02", "    address: root@127.0.0.1\n  - name: h02"), want: []string{"inventory.yaml:8", "hosts[0].address", "not an IP address or DNS name"}},
	{name: "address empty", edit: replace("    address: 127.0.0.1\n  - name: h02", "    address: \"\"\n  - name: h02"), want: []string{"inventory.yaml:8", "hosts[0].address", "is empty"}},
	{name: "port not a number", edit: replace("port: PORT", "port: ssh"), want: []string{"inventory.yaml:4", "port", "ssh"}},
	{name: "port out of range", edit: replace("port: PORT", "port: 70000"), want: []string{"inventory.yaml:4", "port", "70000"}},
	{name: "port negative", edit: replace("port: PORT", "port: -1"), want: []string{"inventory.yaml:4", "port", "-1"}},
	{name: "user with a colon", edit: replace("user: root", `user: "root:x"`), want: []string{"inventory.yaml:3", "user", "not a user name"}},
	{name: "user not a string", edit: replace("user: root", "user: {a: b}"), want: []string{"inventory.yaml:3", "user"}},
	{name: "identity file missing", edit: replace("identity_file: ./id_ed25519", "identity_file: ./nokey"), want: []string{"identity_file", "nokey does not exist"}},
	{name: "identity file is a directory", edit: replace("identity_file: ./id_ed25519", "identity_file: ./keydir"), want: []string{"identity_file", "is a directory"}},
	{name: "identity file is not a key", edit: replace("identity_file: ./id_ed25519", "identity_file: ./garbage_key"), want: []string{"garbage_key", "not a usable private key"}},
	{name: "become not a boolean", edit: replace("  user: root\n", "  user: root\n  become: maybe\n"), want: []string{"inventory.yaml:4", "defaults.become", "maybe"}},
	{name: "docker_host with a bad scheme", edit: replace("    labels: {rack: r1}\n", "    labels: {rack: r1}\n    docker_host: ftp://x\n"), want: []string{"inventory.yaml:12", "hosts[1].docker_host", "unix:///path"}},
	{name: "labels not a mapping", edit: replace("labels: {rack: r1}", "labels: [r1]"), want: []string{"inventory.yaml:11", "hosts[1].labels"}},
	{name: "unknown host field", edit: replace("    labels: {rack: r1}\n", "    labels: {rack: r1}\n    password: hunter2\n"), want: []string{"inventory.yaml:12", "hosts[1].password", "unknown field"}},
	{name: "group lists an unknown host", edit: replace("web: [h01, h02]", "web: [h01, h03]"), want: []string{"inventory.yaml:13", "groups.web[1]", `unknown host "h03"`}},
	{name: "group name with a space", edit: replace("  web:", `  "web servers":`), want: []string{"inventory.yaml:13", "a group name may not"}},
	{name: "group contains a group", edit: replace("  web: [h01, h02]\n", "  web: [h01, h02]\n  all2: [web]\n"), want: []string{"inventory.yaml:14", "groups cannot contain groups"}},
	{name: "ansible become to another user", edit: whole("[web]\nh01 ansible_host=127.0.0.1 ansible_port=PORT ansible_become=yes ansible_become_user=deploy\n"),
		want: []string{"inventory.yaml:2", "ansible_become_user", "set ansible_become_user=root or leave it out"}},
	{name: "ansible become through su", edit: whole("[web]\nh01 ansible_host=127.0.0.1 ansible_port=PORT ansible_become=yes ansible_become_method=su\n"),
		want: []string{"inventory.yaml:2", "ansible_become_method", "sudo"}},
	{name: "ansible proxy command", edit: whole("[web]\nh01 ansible_host=127.0.0.1 ansible_port=PORT ansible_ssh_common_args='-o ProxyCommand=\"nc %h %p\"'\n"),
		want: []string{"inventory.yaml:2", "ProxyCommand", "use -J"}},
	{name: "bastion address that does not resolve", args: []string{"--bastion-addr", "no-such-host.invalid", "app:v1"}, want: []string{"--bastion-addr no-such-host.invalid", "cannot resolve it"}},
	{name: "unknown group selected", args: []string{"--group", "db", "app:v1"}, want: []string{`unknown group "db"`}},
	{name: "unknown host selected", args: []string{"--hosts", "h01,h9", "app:v1"}, want: []string{`unknown host "h9"`}},
	{name: "no image", args: []string{}, want: []string{"IMAGE"}},
	{name: "image with a bad digest", args: []string{"app:v1@sha256:zzz"}, want: []string{"invalid image reference", "app:v1@sha256:zzz"}},
	{name: "image in upper case", args: []string{"UPPER/case:v1"}, want: []string{"invalid image reference", "UPPER/case:v1", "lower case"}},
	{name: "image with a digest and no tag in p2p mode", args: []string{"app@sha256:" + strings.Repeat("a", 64)}, want: []string{"has a digest and no tag", "--mode registry"}},
	{name: "bad mode", args: []string{"--mode", "fast", "app:v1"}, want: []string{`--mode "fast"`, "p2p, registry or auto"}},
	{name: "negative deadline", args: []string{"--check-timeout", "-1s", "app:v1"}, want: []string{"--check-timeout -1s is negative"}},
	{name: "zero concurrency", args: []string{"--concurrency", "0", "app:v1"}, want: []string{"--concurrency", "at least 1"}},
	{name: "retry report missing", args: []string{"--retry-failed", "DIR/none.json", "app:v1"}, want: []string{"--retry-failed", "none.json"}},
	{name: "retry report not JSON", args: []string{"--retry-failed", "DIR/not-json.json", "app:v1"}, want: []string{"--retry-failed", "not a layercast JSON report"}},
	{name: "retry report without failures", args: []string{"--retry-failed", "DIR/ok-report.json", "app:v1"}, want: []string{"--retry-failed", "no host failed"}},
}

// TestRun_BadInputExits2BeforeAnyHostIsTouched runs `layercast run` in
// process on each broken input: exit code 2, one message that names what
// to fix, and no connection to the hosts.
func TestRun_BadInputExits2BeforeAnyHostIsTouched(t *testing.T) {
	dir := badInputDir(t)
	trap := newHostTrap(t)
	var table []string
	for _, c := range badInputCases {
		t.Run(c.name, func(t *testing.T) {
			inv := filepath.Join(dir, "inventory.yaml")
			text := goodInventory
			if c.edit != nil {
				text = c.edit(text)
			}
			if strings.HasPrefix(text, editFailed) {
				t.Fatalf("the case's edit found nothing to replace: %s", text)
			}
			text = strings.ReplaceAll(text, "PORT", trap.port())
			if err := os.WriteFile(inv, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			args := c.args
			if args == nil {
				args = []string{"app:v1"}
			}
			full := []string{"run", "-i", inv, "--cache-dir", filepath.Join(dir, "cache")}
			for _, a := range args {
				a = strings.ReplaceAll(a, "DIR", dir)
				if a == "MISSING" {
					a = filepath.Join(dir, "missing.yaml")
				}
				full = append(full, a)
			}
			code, msg, out := runInProcess(t, full...)
			table = append(table, c.name+" → "+msg)
			if code != exitUsage {
				t.Errorf("exit %d, want %d; message %q", code, exitUsage, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
			if strings.Count(strings.TrimSpace(msg), "\n") > 0 {
				t.Errorf("message takes more than one line:\n%s", msg)
			}
			if out != "" {
				t.Errorf("printed job output for a config error:\n%s", out)
			}
			if n := trap.dials.Load(); n != 0 {
				t.Fatalf("%d connections to the hosts", n)
			}
		})
	}
	t.Logf("%d bad-input cases:\n%s", len(table), strings.Join(table, "\n"))
}

// runInProcess runs the command and returns its exit code, the message
// main would print, and what it wrote to stdout.
func runInProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0, "", out.String()
	}
	code := exitUsage
	var ce *exitCodeError
	if errors.As(err, &ce) {
		code = ce.code
	}
	return code, err.Error(), out.String()
}

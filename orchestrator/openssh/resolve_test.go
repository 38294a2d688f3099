package openssh

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"fmt"
	"github.com/layercast/layercast/orchestrator/inventory"
)

func resolverFor(t *testing.T, config string) *Dialer {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "config")
	if err := os.WriteFile(p, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := NewDialer(Config{SSHConfigPath: p, Home: "/home/op", LocalUser: "op", AgentSocket: "none"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestResolve_SSHConfigFillsWhatTheInventoryLeavesOut(t *testing.T) {
	d := resolverFor(t, `
Host web*
  HostName %h.lab.example
  User deploy
  Port 2222
  IdentityFile ~/.ssh/lab_%r
  IdentitiesOnly yes

Host 10.0.0.*
  User ipuser
  ProxyJump admin@gw.example:2200

Host *
  User fallback
`)
	cases := []struct {
		host inventory.Host
		want Target
	}{
		{inventory.Host{Name: "web1"}, Target{Alias: "web1", HostName: "web1.lab.example", Port: 2222, User: "deploy",
			IdentityFiles: []string{"/home/op/.ssh/lab_deploy"}, IdentitySource: FromSSHConfig, IdentitiesOnly: true}},
		// The inventory wins field by field.
		{inventory.Host{Name: "web2", Address: "192.0.2.7", Port: 22, User: "root", IdentityFile: "/keys/id"},
			Target{Alias: "192.0.2.7", HostName: "192.0.2.7", Port: 22, User: "root", IdentityFiles: []string{"/keys/id"}, IdentitySource: FromInventory}},
		// The address is what ssh_config is matched with.
		{inventory.Host{Name: "db", Address: "10.0.0.5"}, Target{Alias: "10.0.0.5", HostName: "10.0.0.5", Port: 22, User: "ipuser",
			IdentityFiles: []string{"/home/op/.ssh/id_ed25519", "/home/op/.ssh/id_ecdsa", "/home/op/.ssh/id_rsa"}, IdentitySource: FromDefaults,
			Jumps: []Target{{Alias: "gw.example", HostName: "gw.example", Port: 2200, User: "admin",
				IdentityFiles: []string{"/home/op/.ssh/id_ed25519", "/home/op/.ssh/id_ecdsa", "/home/op/.ssh/id_rsa"}, IdentitySource: FromDefaults}}}},
		{inventory.Host{Name: "other"}, Target{Alias: "other", HostName: "other", Port: 22, User: "fallback",
			IdentityFiles: []string{"/home/op/.ssh/id_ed25519", "/home/op/.ssh/id_ecdsa", "/home/op/.ssh/id_rsa"}, IdentitySource: FromDefaults}},
	}
	for _, c := range cases {
		got, err := d.Resolve(c.host)
		if err != nil {
			t.Fatalf("%s: %v", c.host.Name, err)
		}
		if !equalTarget(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.host.Name, got, c.want)
		}
	}
}

func equalTarget(a, b Target) bool {
	if a.Alias != b.Alias || a.HostName != b.HostName || a.Port != b.Port || a.User != b.User ||
		!slices.Equal(a.IdentityFiles, b.IdentityFiles) || a.IdentitySource != b.IdentitySource ||
		a.IdentitiesOnly != b.IdentitiesOnly || len(a.Jumps) != len(b.Jumps) {
		return false
	}
	for i := range a.Jumps {
		if !equalTarget(a.Jumps[i], b.Jumps[i]) {
			return false
		}
	}
	return true
}

func TestResolve_JumpHostsOwnProxyJumpComesFirst(t *testing.T) {
	d := resolverFor(t, `
Host target
  ProxyJump inner
Host inner
  ProxyJump outer
`)
	got, err := d.Resolve(inventory.Host{Name: "target"})
	if err != nil {
		t.Fatal(err)
	}
	var hops []string
	for _, j := range got.Jumps {
		hops = append(hops, j.Alias)
	}
	if strings.Join(hops, ",") != "outer,inner" {
		t.Errorf("hops %v, want outer,inner", hops)
	}
}

func TestResolve_InventoryProxyJumpWinsOverSSHConfig(t *testing.T) {
	d := resolverFor(t, `
Host target
  ProxyJump fromconfig
Host gw
  User gwuser
  Port 2201
`)
	got, err := d.Resolve(inventory.Host{Name: "target", ProxyJump: "gw,ops@gw2:2222"})
	if err != nil {
		t.Fatal(err)
	}
	var hops []string
	for _, j := range got.Jumps {
		hops = append(hops, j.String())
	}
	if strings.Join(hops, " ") != "gwuser@gw:2201 ops@gw2:2222" {
		t.Errorf("hops %v, want gw (with its ~/.ssh/config) then gw2", hops)
	}
}

func TestResolve_Errors(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{"Host a\n  ProxyCommand nc %h %p\n", "ProxyCommand for a is not supported"},
		{"Host a\n  Port abc\n", `Port "abc" for a is not a port number`},
		{"Host a\n  ProxyJump a\n", "longer than"},
		{"Host a\n  ProxyJump user@:22\n", "ProxyJump for a"},
	} {
		_, err := resolverFor(t, c.config).Resolve(inventory.Host{Name: "a"})
		if !errors.Is(err, ErrSSHConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: got %v, want ErrSSHConfig with %q", c.config, err, c.want)
		}
	}
	p := filepath.Join(t.TempDir(), "config")
	os.WriteFile(p, []byte("Match exec \"true\"\n"), 0o600)
	if _, err := NewDialer(Config{SSHConfigPath: p, Home: "/h", LocalUser: "u"}); !errors.Is(err, ErrSSHConfig) || !strings.Contains(err.Error(), p) {
		t.Errorf("unparsable config: %v", err)
	}
}

func TestRetry_StopsOnSentinelsAndRetriesTheRest(t *testing.T) {
	calls := 0
	err := Retry(context.Background(), 5, time.Millisecond, func(context.Context) error {
		calls++
		return fmt.Errorf("h: %w", ErrHostKeyMismatch)
	})
	if calls != 1 || !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("sentinel: %d calls, %v", calls, err)
	}
	calls = 0
	err = Retry(context.Background(), 3, time.Millisecond, func(context.Context) error {
		calls++
		if calls < 3 {
			return errors.New("connection refused")
		}
		return nil
	})
	if calls != 3 || err != nil {
		t.Errorf("transient: %d calls, %v", calls, err)
	}
}

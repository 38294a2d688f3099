package openssh

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// known_hosts as OpenSSH reads it: the user's files and the system's, a
// revocation in any of them wins, and a key never trusted on first use
// when any file says otherwise.

func revokedLine(key ssh.PublicKey) string {
	return "@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

func TestDial_RevokedInTheGlobalFileWinsOverTheUserFile(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	e.trust(t, s, hk.PublicKey())
	appendLine(t, e.global, revokedLine(hk.PublicKey()))
	for _, acceptNew := range []bool{false, true} {
		_, err := e.dialer(t, func(c *Config) { c.AcceptNewHostKeys = acceptNew }).Dial(context.Background(), e.host(s))
		if !errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), "revoked") {
			t.Errorf("accept-new %v: a key the global file revokes: got %v, want a revoked-key mismatch", acceptNew, err)
		}
	}
}

func TestDial_AcceptNewNeverTrustsAHostTheGlobalFilePinsOrRevokes(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	accept := func(c *Config) { c.AcceptNewHostKeys = true }

	// Pinned to another key in the global file; the user file knows nothing.
	os.WriteFile(e.global, []byte(knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, newSigner(t).PublicKey())+"\n"), 0o644)
	_, err := e.dialer(t, accept).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrHostKeyMismatch) || !strings.Contains(err.Error(), e.global+":1") {
		t.Errorf("pinned in the global file: got %v, want a mismatch naming %s:1", err, e.global)
	}
	// Revoked in the global file, unknown in the user file.
	os.WriteFile(e.global, []byte(revokedLine(hk.PublicKey())+"\n"), 0o644)
	_, err = e.dialer(t, accept).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("revoked in the global file: got %v, want a mismatch", err)
	}
	if b, _ := os.ReadFile(e.knownHosts); len(b) > 0 {
		t.Errorf("the user's known_hosts was written:\n%s", b)
	}
	// The global file's own key is trusted as it is.
	os.WriteFile(e.global, []byte(knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, hk.PublicKey())+"\n"), 0o644)
	c, err := e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatalf("key in the global file: %v", err)
	}
	c.Close()
}

func TestDial_SSHConfigNamesTheKnownHostsFilesAndTheAlias(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	first, second := filepath.Join(e.home, "kh1"), filepath.Join(e.home, "kh2")
	global := filepath.Join(e.home, "kh-global")
	os.WriteFile(e.sshConfig, []byte(`Host 127.0.0.1
  UserKnownHostsFile ~/kh1 %d/kh2
  GlobalKnownHostsFile `+global+`
  HostKeyAlias web-alias
`), 0o600)
	noInventoryFile := func(c *Config) { c.KnownHostsPath = "" }

	// Known under the alias in the second user file.
	appendLine(t, second, knownhosts.Line([]string{"web-alias"}, hk.PublicKey()))
	c, err := e.dialer(t, noInventoryFile).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatalf("key under HostKeyAlias in the second UserKnownHostsFile: %v", err)
	}
	c.Close()

	// A revocation in ssh_config's GlobalKnownHostsFile wins.
	appendLine(t, global, revokedLine(hk.PublicKey()))
	if _, err := e.dialer(t, noInventoryFile).Dial(context.Background(), e.host(s)); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("revoked in GlobalKnownHostsFile: got %v", err)
	}
	os.Remove(global)

	// A new key goes to the first user file, under the alias.
	os.Remove(second)
	c, err = e.dialer(t, func(c *Config) { noInventoryFile(c); c.AcceptNewHostKeys = true }).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if b, _ := os.ReadFile(first); !strings.HasPrefix(string(b), "web-alias ") {
		t.Errorf("%s holds %q, want the key recorded under web-alias", first, b)
	}
}

func TestDial_InventoryKnownHostsReplacesTheUserFilesNotTheGlobalOnes(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	// ssh_config's user file trusts the key, but the inventory names its
	// own file, which does not.
	other := filepath.Join(e.home, "kh-config")
	os.WriteFile(e.sshConfig, []byte("Host *\n  UserKnownHostsFile "+other+"\n"), 0o600)
	appendLine(t, other, knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, hk.PublicKey()))
	if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(s)); !errors.Is(err, ErrHostKeyUnknown) || !strings.Contains(err.Error(), ">> "+e.knownHosts) {
		t.Errorf("with the inventory's known_hosts: got %v, want unknown, added to %s", err, e.knownHosts)
	}
	// The global file still counts.
	appendLine(t, e.global, knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, hk.PublicKey()))
	c, err := e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatalf("key in the global file beside the inventory's: %v", err)
	}
	c.Close()
}

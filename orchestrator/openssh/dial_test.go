package openssh

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// env is a client side: a home dir with a key, an ssh_config and a
// known_hosts file, and no agent.
type env struct {
	home       string
	key        ssh.Signer
	raw        ed25519.PrivateKey
	keyPath    string
	knownHosts string
	// global is the system-wide known_hosts file the dialer reads (in
	// place of /etc/ssh/ssh_known_hosts).
	global    string
	sshConfig string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	home := t.TempDir()
	signer, raw := newKey(t)
	e := &env{home: home, key: signer, raw: raw, keyPath: filepath.Join(home, "id_test"),
		knownHosts: filepath.Join(home, "known_hosts"), global: filepath.Join(home, "ssh_known_hosts"), sshConfig: filepath.Join(home, "ssh_config")}
	writeKey(t, e.keyPath, e.raw, nil)
	return e
}

func writeKey(t *testing.T, path string, raw ed25519.PrivateKey, passphrase []byte) {
	t.Helper()
	var (
		block *pem.Block
		err   error
	)
	if passphrase != nil {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(raw, "", passphrase)
	} else {
		block, err = ssh.MarshalPrivateKey(raw, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (e *env) dialer(t *testing.T, mod func(*Config)) *Dialer {
	t.Helper()
	cfg := Config{SSHConfigPath: e.sshConfig, KnownHostsPath: e.knownHosts, GlobalKnownHosts: []string{e.global}, AgentSocket: "none",
		Home: e.home, LocalUser: "tester", ConnectTimeout: 5 * time.Second, DialAttempts: 1, KeepAlive: -1}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDialer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) trust(t *testing.T, s *testServer, key ssh.PublicKey) {
	t.Helper()
	appendLine(t, e.knownHosts, knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, key))
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintln(f, line)
}

func (e *env) host(s *testServer) inventory.Host {
	return inventory.Host{Name: "h1", Address: "127.0.0.1", Port: s.port, User: "tester", IdentityFile: e.keyPath}
}

func TestDial_UnknownHostKeyIsRefusedWithAFix(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	_, err := e.dialer(t, func(c *Config) { c.DialAttempts = 3 }).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrHostKeyUnknown) {
		t.Fatalf("want ErrHostKeyUnknown, got %v", err)
	}
	for _, w := range []string{"ssh-keyscan -p " + fmt.Sprint(s.port) + " 127.0.0.1 >> " + e.knownHosts, "--accept-new-host-keys", ssh.FingerprintSHA256(hk.PublicKey())} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if strings.Contains(err.Error(), "attempts") {
		t.Errorf("an unknown host key was retried: %v", err)
	}
}

func TestDial_AcceptNewRecordsKeyAndTrustsItAfterwards(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	appendLine(t, e.knownHosts, "# keep this comment")
	c, err := e.dialer(t, func(c *Config) { c.AcceptNewHostKeys = true }).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	data, _ := os.ReadFile(e.knownHosts)
	want := knownhosts.Line([]string{knownhosts.Normalize(s.addr)}, hk.PublicKey())
	if !strings.Contains(string(data), "# keep this comment\n") || !strings.Contains(string(data), want) {
		t.Fatalf("known_hosts now:\n%s\nwant it to keep the comment and hold %s", data, want)
	}
	// Strict again: the recorded key is trusted.
	c, err = e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatalf("dial with the recorded key: %v", err)
	}
	c.Close()
}

func TestDial_ChangedHostKeyIsMismatchEvenWithAcceptNew(t *testing.T) {
	e := newEnv(t)
	s := startServer(t, []ssh.Signer{newSigner(t)}, e.key.PublicKey())
	e.trust(t, s, newSigner(t).PublicKey())
	_, err := e.dialer(t, func(c *Config) { c.AcceptNewHostKeys = true; c.DialAttempts = 3 }).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("want ErrHostKeyMismatch, got %v", err)
	}
	if !strings.Contains(err.Error(), e.knownHosts+":1") || !strings.Contains(err.Error(), "ssh-keygen -f") {
		t.Errorf("error should name the known_hosts line and the fix: %v", err)
	}
}

func TestDial_PrefersTheKeyTypeKnownHostsHas(t *testing.T) {
	e := newEnv(t)
	ed := newSigner(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	// The server offers both; known_hosts has only the ECDSA key. Without
	// a preference the client would ask for ed25519 first and see a
	// mismatch.
	s := startServer(t, []ssh.Signer{ed, ec}, e.key.PublicKey())
	e.trust(t, s, ec.PublicKey())
	c, err := e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

func TestDial_CertAuthorityLineTrustsSignedHostCertificate(t *testing.T) {
	e := newEnv(t)
	ca := newSigner(t)
	hk := newSigner(t)
	certSigner := func(signedBy ssh.Signer, principal string) ssh.Signer {
		cert := &ssh.Certificate{Key: hk.PublicKey(), CertType: ssh.HostCert, ValidPrincipals: []string{principal},
			ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix())}
		if err := cert.SignCert(rand.Reader, signedBy); err != nil {
			t.Fatal(err)
		}
		cs, err := ssh.NewCertSigner(cert, hk)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	good := startServer(t, []ssh.Signer{certSigner(ca, "127.0.0.1")}, e.key.PublicKey())
	// x/crypto/ssh/knownhosts matches a pattern without a port against
	// port 22 only; the servers here listen elsewhere, hence [*]:*.
	caLine := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ca.PublicKey())))
	appendLine(t, e.knownHosts, fmt.Sprintf("@cert-authority [*]:%d %s", good.port, caLine))
	c, err := e.dialer(t, nil).Dial(context.Background(), e.host(good))
	if err != nil {
		t.Fatalf("dial host with a CA-signed certificate: %v", err)
	}
	c.Close()

	other := startServer(t, []ssh.Signer{certSigner(newSigner(t), "127.0.0.1")}, e.key.PublicKey())
	appendLine(t, e.knownHosts, fmt.Sprintf("@cert-authority [*]:%d %s", other.port, caLine))
	if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(other)); err == nil || !(errors.Is(err, ErrHostKeyUnknown) || errors.Is(err, ErrHostKeyMismatch)) {
		t.Errorf("certificate from an unknown CA: want a host key error, got %v", err)
	}
	// A host covered by the CA line that shows only a plain key is unknown,
	// not mismatched; one that shows the CA's own key is refused.
	plain := startServer(t, []ssh.Signer{newSigner(t)}, e.key.PublicKey())
	appendLine(t, e.knownHosts, fmt.Sprintf("@cert-authority [*]:%d %s", plain.port, caLine))
	if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(plain)); !errors.Is(err, ErrHostKeyUnknown) {
		t.Errorf("plain key under a CA line: want ErrHostKeyUnknown, got %v", err)
	}
	caAsHost := startServer(t, []ssh.Signer{ca}, e.key.PublicKey())
	appendLine(t, e.knownHosts, fmt.Sprintf("@cert-authority [*]:%d %s", caAsHost.port, caLine))
	if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(caAsHost)); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("CA key offered as host key: want ErrHostKeyMismatch, got %v", err)
	}

	wrongName := startServer(t, []ssh.Signer{certSigner(ca, "other.example")}, e.key.PublicKey())
	appendLine(t, e.knownHosts, fmt.Sprintf("@cert-authority [*]:%d %s", wrongName.port, caLine))
	if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(wrongName)); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("certificate for another host name: want ErrHostKeyMismatch, got %v", err)
	}
}

func TestDial_RefusedKeyIsErrAuthFailedAndNotRetried(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}) // accepts no client key
	e.trust(t, s, hk.PublicKey())
	start := time.Now()
	_, err := e.dialer(t, func(c *Config) { c.DialAttempts = 3; c.RetryDelay = 2 * time.Second }).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("want ErrAuthFailed, got %v", err)
	}
	if !strings.Contains(err.Error(), "tester@127.0.0.1:") {
		t.Errorf("error should name user and address: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("auth failure was retried (took %v)", time.Since(start))
	}
}

func TestDial_EncryptedKeyWithoutAgentNamesTheFile(t *testing.T) {
	e := newEnv(t)
	writeKey(t, e.keyPath, e.raw, []byte("secret"))
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	e.trust(t, s, hk.PublicKey())
	_, err := e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), e.keyPath+" is encrypted") || !strings.Contains(err.Error(), "ssh-add") {
		t.Fatalf("want ErrKeyFile naming %s, got %v", e.keyPath, err)
	}
	os.Chmod(e.keyPath, 0)
	if os.Geteuid() != 0 {
		if _, err := e.dialer(t, nil).Dial(context.Background(), e.host(s)); !errors.Is(err, ErrKeyFile) || !strings.Contains(err.Error(), e.keyPath) {
			t.Errorf("unreadable key: got %v", err)
		}
	}
}

func TestDial_ConnectionRefusedIsRetried(t *testing.T) {
	e := newEnv(t)
	s := startServer(t, []ssh.Signer{newSigner(t)})
	s.close() // nothing listens on the port any more
	_, err := e.dialer(t, func(c *Config) { c.DialAttempts = 3; c.RetryDelay = 20 * time.Millisecond }).Dial(context.Background(), e.host(s))
	if err == nil || Permanent(err) {
		t.Fatalf("want a retryable error, got %v", err)
	}
	if !strings.Contains(err.Error(), "after 3 attempts") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("want 3 attempts and the refusal in the error: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.dialer(t, func(c *Config) { c.DialAttempts = 3 }).Dial(ctx, e.host(s)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: got %v", err)
	}
}

func TestDial_ProxyJumpThroughTwoHopsFromSSHConfig(t *testing.T) {
	e := newEnv(t)
	hk1, hk2, hk3 := newSigner(t), newSigner(t), newSigner(t)
	j1 := startServer(t, []ssh.Signer{hk1}, e.key.PublicKey())
	j2 := startServer(t, []ssh.Signer{hk2}, e.key.PublicKey())
	target := startServer(t, []ssh.Signer{hk3}, e.key.PublicKey())
	for _, p := range []struct {
		s *testServer
		k ssh.Signer
	}{{j1, hk1}, {j2, hk2}, {target, hk3}} {
		e.trust(t, p.s, p.k.PublicKey())
	}
	cfg := fmt.Sprintf(`Host web1
  HostName 127.0.0.1
  Port %d
  User deploy
  IdentityFile %s
  ProxyJump jump1,ops@jump2

Host jump1
  HostName 127.0.0.1
  Port %d
  IdentityFile %s

Host jump2
  HostName 127.0.0.1
  Port %d
  IdentityFile %s
`, target.port, e.keyPath, j1.port, e.keyPath, j2.port, e.keyPath)
	if err := os.WriteFile(e.sshConfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.dialer(t, nil)
	tg, err := d.Resolve(inventory.Host{Name: "web1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Jumps) != 2 || tg.Jumps[1].User != "ops" || tg.Jumps[0].User != "tester" || tg.User != "deploy" || tg.Port != target.port {
		t.Fatalf("resolved %+v", tg)
	}
	c, err := d.Dial(context.Background(), inventory.Host{Name: "web1"})
	if err != nil {
		t.Fatalf("dial through jumps: %v", err)
	}
	defer c.Close()
	if j1.directTCPIP.Load() != 1 || j2.directTCPIP.Load() != 1 {
		t.Errorf("jump traffic: jump1 %d, jump2 %d channels; want 1 each", j1.directTCPIP.Load(), j2.directTCPIP.Load())
	}
	out, err := c.Run(context.Background(), Script(`echo "$SSH_CONNECTION"`))
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) != 4 || f[3] != fmt.Sprint(target.port) {
		t.Errorf("SSH_CONNECTION on the target: %q", out)
	}

	// A jump host with an unknown key stops the dial with the jump's name.
	os.WriteFile(e.knownHosts, nil, 0o600)
	e.trust(t, target, hk3.PublicKey())
	if _, err := d.Dial(context.Background(), inventory.Host{Name: "web1"}); !errors.Is(err, ErrHostKeyUnknown) || !strings.Contains(err.Error(), "jump host jump1") {
		t.Errorf("unknown jump host key: got %v", err)
	}
}

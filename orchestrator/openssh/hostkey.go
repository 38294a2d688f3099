package openssh

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeys checks host keys against the known_hosts files of each hop
// (Target.KnownHosts and GlobalKnownHosts, read together as OpenSSH does:
// a key in any file is known, a revocation in any file wins), strictly
// unless acceptNew is set. With acceptNew an unknown host's key is appended
// to the hop's first user file (under a lock, by atomic rename) and
// trusted; a key that any file contradicts (another key for the host, or
// the key revoked) is never accepted.
type hostKeys struct {
	acceptNew bool
	mu        *sync.Mutex // serializes appends within this process
}

// existing lists the files of t that exist, user files first.
func existing(t Target) []string {
	var out []string
	for _, f := range append(append([]string(nil), t.KnownHosts...), t.GlobalKnownHosts...) {
		if st, err := os.Stat(f); err == nil && !st.IsDir() {
			out = append(out, f)
		}
	}
	return out
}

// load reads the hop's files; none at all is an empty database.
func load(files []string) (ssh.HostKeyCallback, error) {
	if len(files) == 0 {
		return func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }, nil
	}
	cb, err := knownhosts.New(files...)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return cb, nil
}

// userFile is where a new key of t is recorded and where the operator is
// told to add one: the first user file, else the first file at all.
func userFile(t Target) string {
	if len(t.KnownHosts) > 0 {
		return t.KnownHosts[0]
	}
	if len(t.GlobalKnownHosts) > 0 {
		return t.GlobalKnownHosts[0]
	}
	return "~/.ssh/known_hosts"
}

// probeKey is a public key that matches no known_hosts line; checking it
// makes knownhosts list the keys it does have for a host.
type probeKey []byte

func (p probeKey) Type() string                        { return "layercast-probe" }
func (p probeKey) Marshal() []byte                     { return p }
func (p probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

func newProbeKey() probeKey {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}

var keyAlgos = map[string][]string{
	ssh.KeyAlgoRSA:        {ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA},
	ssh.KeyAlgoED25519:    {ssh.KeyAlgoED25519},
	ssh.KeyAlgoECDSA256:   {ssh.KeyAlgoECDSA256},
	ssh.KeyAlgoECDSA384:   {ssh.KeyAlgoECDSA384},
	ssh.KeyAlgoECDSA521:   {ssh.KeyAlgoECDSA521},
	ssh.KeyAlgoSKED25519:  {ssh.KeyAlgoSKED25519},
	ssh.KeyAlgoSKECDSA256: {ssh.KeyAlgoSKECDSA256},
}

var (
	certAlgos = []string{
		ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
		ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01,
	}
	plainAlgos = []string{
		ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA,
	}
)

// caLines are the @cert-authority lines of known_hosts files: where they
// are and their keys. x/crypto/ssh/knownhosts lists them among a host's
// plain keys, and would even accept a CA key offered as a plain host key;
// these let layercast tell them apart.
type caLines struct {
	lines map[caLine]bool
	keys  map[string]bool
}

type caLine struct {
	file string
	line int
}

func (ca caLines) has(w knownhosts.KnownKey) bool { return ca.lines[caLine{w.Filename, w.Line}] }

func readCALines(files []string) caLines {
	ca := caLines{lines: map[caLine]bool{}, keys: map[string]bool{}}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for i, l := range strings.Split(string(data), "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] == "@cert-authority" {
				ca.lines[caLine{path, i + 1}] = true
				if k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.Join(f[2:], " "))); err == nil {
					ca.keys[string(k.Marshal())] = true
				}
			}
		}
	}
	return ca
}

// knownAlgorithms lists the host key algorithms to ask for, so that a
// server offering several key types shows one known_hosts can check: the
// types of the host's plain keys, led by certificate types when an
// @cert-authority line covers the host. Nil means no preference (unknown
// host): the library's default order.
func knownAlgorithms(cb ssh.HostKeyCallback, addr string, ca caLines) []string {
	err := cb(addr, &net.TCPAddr{IP: net.IPv4zero}, newProbeKey())
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var (
		out   []string
		hasCA bool
		seen  = map[string]bool{}
	)
	for _, w := range ke.Want {
		if ca.has(w) {
			hasCA = true
			continue
		}
		for _, a := range keyAlgos[w.Key.Type()] {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	if hasCA {
		if len(out) == 0 {
			out = plainAlgos
		}
		out = append(append([]string{}, certAlgos...), out...)
	}
	return out
}

// checker returns the HostKeyCallback for one hop, the algorithms to ask
// for, and a func that reports the host key error seen, if any (the ssh
// library flattens errors into its handshake message).
func (k *hostKeys) checker(t Target) (ssh.HostKeyCallback, []string, func() error, error) {
	files := existing(t)
	cb, err := load(files)
	if err != nil {
		return nil, nil, nil, err
	}
	ca := readCALines(files)
	algos := knownAlgorithms(cb, t.KeyAddr(), ca)
	var (
		mu      sync.Mutex
		seenErr error
	)
	check := func(_ string, remote net.Addr, key ssh.PublicKey) error {
		err := k.verify(cb, ca, t, remote, key)
		mu.Lock()
		seenErr = err
		mu.Unlock()
		return err
	}
	last := func() error {
		mu.Lock()
		defer mu.Unlock()
		return seenErr
	}
	return check, algos, last, nil
}

func (k *hostKeys) verify(cb ssh.HostKeyCallback, ca caLines, t Target, remote net.Addr, key ssh.PublicKey) error {
	if _, isCert := key.(*ssh.Certificate); !isCert && ca.keys[string(key.Marshal())] {
		return fmt.Errorf("%w: %s offered a certificate authority's key as its own host key", ErrHostKeyMismatch, t.Addr())
	}
	// Looked up under HostKeyAlias when ssh_config sets one.
	err := cb(t.KeyAddr(), remote, key)
	if err == nil {
		return nil
	}
	var (
		ke *knownhosts.KeyError
		re *knownhosts.RevokedError
	)
	if errors.As(err, &ke) {
		// @cert-authority lines are no plain keys of the host.
		ke = &knownhosts.KeyError{Want: slices.DeleteFunc(slices.Clone(ke.Want), ca.has)}
		err = ke
	}
	switch {
	case errors.As(err, &re):
		return fmt.Errorf("%w: %s offered a key revoked in %s", ErrHostKeyMismatch, t.Addr(), re.Revoked.String())
	case errors.As(err, &ke) && len(ke.Want) > 0:
		var lines []string
		for _, w := range ke.Want {
			lines = append(lines, fmt.Sprintf("%s:%d (%s)", w.Filename, w.Line, w.Key.Type()))
		}
		file := ke.Want[0].Filename
		return fmt.Errorf("%w: %s offered %s key %s, but known_hosts holds a different key for it: %s. Someone may be intercepting the connection; if the host was reinstalled, check its new key and remove the old one with `ssh-keygen -f %s -R %s`",
			ErrHostKeyMismatch, t.Addr(), key.Type(), ssh.FingerprintSHA256(key), strings.Join(lines, ", "), file, knownhosts.Normalize(t.KeyAddr()))
	case errors.As(err, &ke):
		files := strings.Join(existing(t), ", ")
		if files == "" {
			files = "no known_hosts file"
		}
		if cert, ok := key.(*ssh.Certificate); ok {
			// The host showed a certificate that no @cert-authority line
			// vouches for; its plain key is not known either.
			return fmt.Errorf("%w: %s offered a host certificate signed by %s, which no @cert-authority line in %s trusts", ErrHostKeyUnknown, t.Addr(), ssh.FingerprintSHA256(cert.SignatureKey), files)
		}
		if k.acceptNew {
			return k.appendKey(t, key)
		}
		return fmt.Errorf("%w: %s has no entry for %s (%s key %s). Check the fingerprint, then add it with `ssh-keyscan -p %d %s >> %s`, or rerun with --accept-new-host-keys to trust it on first use",
			ErrHostKeyUnknown, files, t.Addr(), key.Type(), ssh.FingerprintSHA256(key), t.Port, t.HostName, userFile(t))
	default:
		// A certificate the CertChecker refused: wrong principal, expired,
		// not a host certificate, or signed by an unknown authority.
		if _, ok := key.(*ssh.Certificate); ok {
			return fmt.Errorf("%w: host certificate of %s rejected: %v", ErrHostKeyMismatch, t.Addr(), err)
		}
		return fmt.Errorf("%w: check %s against known_hosts: %v", ErrHostKeyMismatch, t.Addr(), err)
	}
}

// appendKey trusts key for t on first use: under an exclusive lock on the
// directory of the hop's first user known_hosts file it re-reads every
// file of the hop (another process may have added the host meanwhile,
// another file may pin or revoke it), and appends by writing a new file
// and renaming it over the old one.
func (k *hostKeys) appendKey(t Target, key ssh.PublicKey) error {
	if _, ok := key.(*ssh.Certificate); ok {
		return fmt.Errorf("%w: %s offered a certificate; trust its authority with an @cert-authority line instead", ErrHostKeyUnknown, t.Addr())
	}
	if len(t.KnownHosts) == 0 {
		return fmt.Errorf("%w: %s is not in known_hosts and UserKnownHostsFile is none: there is nowhere to record its key", ErrHostKeyUnknown, t.Addr())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	path := t.KnownHosts[0]
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		path = resolved
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("accept new host key: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return fmt.Errorf("accept new host key: lock %s: %w", dir, err)
	}
	defer unlock()

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("accept new host key: %w", err)
	}
	if files := existing(t); len(files) > 0 {
		cb, err := knownhosts.New(files...)
		if err != nil {
			return fmt.Errorf("accept new host key: %w", err)
		}
		addr := &net.TCPAddr{IP: net.IPv4zero}
		err = cb(t.KeyAddr(), addr, key)
		var (
			ke *knownhosts.KeyError
			re *knownhosts.RevokedError
		)
		switch {
		case err == nil:
			return nil // added by someone else meanwhile, same key
		case errors.As(err, &re):
			return fmt.Errorf("%w: %s offered a key revoked in %s", ErrHostKeyMismatch, t.Addr(), re.Revoked.String())
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return fmt.Errorf("%w: %s: a different key for %s is in %s:%d", ErrHostKeyMismatch, t.Addr(), t.Addr(), ke.Want[0].Filename, ke.Want[0].Line)
		}
	}
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	var buf bytes.Buffer
	buf.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		buf.WriteByte('\n')
	}
	buf.WriteString(knownhosts.Line([]string{knownhosts.Normalize(t.KeyAddr())}, key))
	buf.WriteByte('\n')
	tmp, err := os.CreateTemp(dir, ".known_hosts.layercast-*")
	if err != nil {
		return fmt.Errorf("accept new host key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("accept new host key: %w", err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("accept new host key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("accept new host key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("accept new host key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("accept new host key: %w", err)
	}
	return nil
}

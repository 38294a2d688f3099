package testbed

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// newKeyPair makes an ed25519 key and returns it in OpenSSH's private key
// format and as an authorized_keys line.
func newKeyPair(comment string) (private, authorized []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub))) + " " + comment + "\n"
	return pem.EncodeToMemory(block), []byte(line), nil
}

// knownHostsLine returns the known_hosts line for a host key served at ip:22.
func knownHostsLine(ip string, authorized []byte) (string, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(authorized)
	if err != nil {
		return "", fmt.Errorf("parse host key: %w", err)
	}
	return knownhosts.Line([]string{ip}, pub), nil
}

// writeInventory writes an inventory in layercast's format for the lab's
// hosts, logging in as user (with become when user is not root).
func writeInventory(path string, hosts []*Machine, user string, rackSize int) error {
	var b strings.Builder
	become := user != "root"
	fmt.Fprintf(&b, "# layercast lab inventory, written by testbed up. Paths are relative to this file.\n")
	fmt.Fprintf(&b, "known_hosts: ./known_hosts\n")
	fmt.Fprintf(&b, "defaults:\n  user: %s\n  port: 22\n  identity_file: ./id_ed25519\n  become: %t\n", user, become)
	fmt.Fprintf(&b, "hosts:\n")
	groups := map[string][]string{}
	var order []string
	addTo := func(g, h string) {
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], h)
	}
	for i, h := range hosts {
		rack := fmt.Sprintf("rack%d", i/rackSize+1)
		parity := "odd"
		if (i+1)%2 == 0 {
			parity = "even"
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %s\n    labels: {rack: %s, parity: %s}\n", h.Name, h.IP, rack, parity)
		if h.runsContainerd() {
			fmt.Fprintf(&b, "    runtime: %s\n", RuntimeContainerd)
		}
		addTo(rack, h.Name)
		addTo(parity, h.Name)
		if h.runsContainerd() {
			addTo(RuntimeContainerd, h.Name)
		}
	}
	fmt.Fprintf(&b, "groups:\n")
	for _, g := range order {
		fmt.Fprintf(&b, "  %s: [%s]\n", g, strings.Join(groups[g], ", "))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeKnownHosts writes one line per host key.
func writeKnownHosts(path string, hosts []*Machine) error {
	var b strings.Builder
	for _, h := range hosts {
		b.WriteString(h.KnownHost)
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeFiles writes each file with its mode, creating parent directories.
func writeFiles(files []fileSpec) error {
	for _, f := range files {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(f.path), err)
		}
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		// WriteFile's mode is cut by the umask; set the exact one.
		if err := os.Chmod(f.path, f.mode); err != nil {
			return fmt.Errorf("chmod %s: %w", f.path, err)
		}
		if f.uid != 0 || f.gid != 0 {
			if err := os.Chown(f.path, f.uid, f.gid); err != nil {
				return fmt.Errorf("chown %s: %w", f.path, err)
			}
		}
	}
	return nil
}

type fileSpec struct {
	path     string
	data     []byte
	mode     os.FileMode
	uid, gid int
}

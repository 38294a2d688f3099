package openssh

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// keyring is the set of keys one hop offers, in order: identity files
// first (from ssh-agent when the file is encrypted), then the agent's other
// keys unless IdentitiesOnly.
type keyring struct {
	signers []ssh.Signer
	// problems explain skipped default identities, for the error when no
	// key is left to offer.
	problems []string
}

// openAgent connects to ssh-agent at sock; "" means none. The caller closes
// the returned closer.
func openAgent(sock string) (agent.ExtendedAgent, func(), error) {
	if sock == "" {
		return nil, func() {}, nil
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		return nil, func() {}, fmt.Errorf("ssh-agent at %s: %w", sock, err)
	}
	return agent.NewClient(c), func() { c.Close() }, nil
}

// loadKeys builds the keyring for t. Problems with identity files the user
// named (inventory or ~/.ssh/config) are errors wrapping ErrKeyFile;
// problems with OpenSSH's default files only skip them.
func loadKeys(t Target, ag agent.ExtendedAgent) (*keyring, error) {
	kr := &keyring{}
	var agentSigners []ssh.Signer
	if ag != nil {
		s, err := ag.Signers()
		if err != nil {
			kr.problems = append(kr.problems, fmt.Sprintf("ssh-agent: %v", err))
		}
		agentSigners = s
	}
	used := map[string]bool{}
	for _, path := range t.IdentityFiles {
		s, err := loadIdentity(path, agentSigners)
		if err != nil {
			missing := errors.Is(err, fs.ErrNotExist)
			if t.IdentitySource == FromInventory || t.IdentitySource == FromSSHConfig && !missing {
				return nil, err
			}
			if !missing {
				kr.problems = append(kr.problems, err.Error())
			}
			continue
		}
		for _, sg := range s {
			k := string(sg.PublicKey().Marshal())
			if !used[k] {
				used[k] = true
				kr.signers = append(kr.signers, sg)
			}
		}
	}
	if !t.IdentitiesOnly {
		for _, sg := range agentSigners {
			k := string(sg.PublicKey().Marshal())
			if !used[k] {
				used[k] = true
				kr.signers = append(kr.signers, sg)
			}
		}
	}
	return kr, nil
}

// loadIdentity reads one private key file, and its certificate
// (path-cert.pub) when there is one. An encrypted key is taken from the
// agent when the agent holds it.
func loadIdentity(path string, agentSigners []ssh.Signer) ([]ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrKeyFile, path, unwrapPathErr(err))
	}
	signer, err := ssh.ParsePrivateKey(data)
	var pm *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pm):
		pub := pm.PublicKey
		if pub == nil {
			if p, perr := readPublicKey(path + ".pub"); perr == nil {
				pub = p
			}
		}
		for _, s := range agentSigners {
			if pub != nil && bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
				signer = s
				break
			}
		}
		if signer == nil {
			return nil, fmt.Errorf("%w: %s is encrypted and ssh-agent does not hold it: run `ssh-add %s` (and make sure SSH_AUTH_SOCK is set)", ErrKeyFile, path, path)
		}
	case err != nil:
		return nil, fmt.Errorf("%w: %s is not a usable private key: %v", ErrKeyFile, path, err)
	}
	out := []ssh.Signer{signer}
	if certKey, err := readPublicKey(path + "-cert.pub"); err == nil {
		if cert, ok := certKey.(*ssh.Certificate); ok {
			if cs, err := ssh.NewCertSigner(cert, signer); err == nil {
				out = []ssh.Signer{cs, signer}
			}
		}
	}
	return out, nil
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	return k, err
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// authMethod offers the keyring and records that authentication began, so
// that a failed handshake after a good host key reads as ErrAuthFailed.
func (kr *keyring) authMethod(started *atomic.Bool) ssh.AuthMethod {
	return ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		started.Store(true)
		return kr.signers, nil
	})
}

// noKeysError explains why there is nothing to offer.
func (kr *keyring) noKeysError(t Target, agentSock string) error {
	var why []string
	if agentSock == "" {
		why = append(why, "no ssh-agent (SSH_AUTH_SOCK is not set)")
	} else {
		why = append(why, "ssh-agent holds no key")
	}
	if len(t.IdentityFiles) > 0 && t.IdentitySource != FromInventory {
		why = append(why, "none of "+strings.Join(t.IdentityFiles, ", ")+" is usable")
	}
	why = append(why, kr.problems...)
	return fmt.Errorf("%w: no SSH key to offer to %s: %s; set identity_file in the inventory or load a key with ssh-add", ErrAuthFailed, t, strings.Join(why, "; "))
}

// CheckKeys reads the identity files every host names (in the inventory or
// in ~/.ssh/config), so that a key that cannot be used is reported before
// any host is contacted. Each problem is reported once, for the first host
// that names the file; errors wrap ErrKeyFile or ErrSSHConfig.
func (d *Dialer) CheckKeys(hosts []inventory.Host) error {
	ag, closeAgent, _ := openAgent(d.cfg.AgentSocket)
	defer closeAgent()
	var errs []error
	seen := map[string]bool{}
	for _, h := range hosts {
		t, err := d.Resolve(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
			continue
		}
		files := strings.Join(t.IdentityFiles, "\x00")
		if seen[files] {
			continue
		}
		seen[files] = true
		if _, err := loadKeys(t, ag); err != nil {
			errs = append(errs, fmt.Errorf("host %s: %w", h.Name, err))
		}
	}
	return errors.Join(errs...)
}

package testbed

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/errgroup"
)

func (l *Lab) registryAddr() string {
	if !l.st.Registry {
		return ""
	}
	return l.st.Subnet + ".3:5000"
}

func (l *Lab) startDocker(m *Machine) error {
	p, err := spawn(m.dockerdArgs(l.registryAddr()), filepath.Join(m.Dir, "dockerd.log"), daemonEnv())
	if err != nil {
		return fmt.Errorf("start dockerd: %w", err)
	}
	l.mu.Lock()
	m.Docker = p
	l.mu.Unlock()
	return nil
}

// startContainerd starts a containerd host's daemon.
func (l *Lab) startContainerd(m *Machine) error {
	p, err := spawn(m.containerdArgs(), filepath.Join(m.Dir, "containerd.log"), daemonEnv())
	if err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	l.mu.Lock()
	m.Containerd = p
	l.mu.Unlock()
	return nil
}

func (l *Lab) startSSHD(m *Machine) error {
	p, err := spawn(m.sshdArgs(), filepath.Join(m.Dir, "sshd.log"), daemonEnv())
	if err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	l.mu.Lock()
	m.SSHD = p
	l.mu.Unlock()
	return nil
}

// registryConfig is docker-registry's configuration; storage is the lab's.
const registryConfig = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: :5000
`

func (l *Lab) startRegistry(m *Machine) error {
	cfgPath := filepath.Join(m.Dir, "config.yml")
	data := filepath.Join(m.Dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return fmt.Errorf("create registry storage: %w", err)
	}
	config := fmt.Appendf(nil, registryConfig, data)
	if l.st.RegistryUser != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(l.st.RegistryPassword), bcrypt.MinCost)
		if err != nil {
			return fmt.Errorf("registry htpasswd: %w", err)
		}
		htpasswd := filepath.Join(m.Dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(l.st.RegistryUser+":"+string(hash)+"\n"), 0o600); err != nil {
			return fmt.Errorf("write registry htpasswd: %w", err)
		}
		config = fmt.Appendf(config, "auth:\n  htpasswd:\n    realm: layercast-lab\n    path: %s\n", htpasswd)
	}
	if err := os.WriteFile(cfgPath, config, 0o644); err != nil {
		return fmt.Errorf("write registry config: %w", err)
	}
	args := append(m.enter(), "--", "docker-registry", "serve", cfgPath)
	p, err := spawn(args, filepath.Join(m.Dir, "registry.log"), daemonEnv())
	if err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	l.mu.Lock()
	m.Registry = p
	l.mu.Unlock()
	return nil
}

// waitReady waits until every daemon of the lab answers.
func (l *Lab) waitReady(ctx context.Context, timeout time.Duration) error {
	bastion := l.bastion()
	var g errgroup.Group
	for _, m := range l.st.Machines {
		g.Go(func() error {
			switch m.Role {
			case RoleRegistry:
				if err := waitPort(ctx, bastion.NetnsPath(), m.IP+":5000", timeout); err != nil {
					return fmt.Errorf("%s: registry: %w", m.Name, err)
				}
				return nil
			case RoleHost:
				if err := waitPort(ctx, bastion.NetnsPath(), m.IP+":22", timeout); err != nil {
					return fmt.Errorf("%s: sshd: %w", m.Name, err)
				}
			}
			if m.runsContainerd() {
				if err := m.waitContainerd(ctx, timeout); err != nil {
					return fmt.Errorf("%s: %w", m.Name, err)
				}
				return nil
			}
			if err := m.waitDocker(ctx, timeout); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

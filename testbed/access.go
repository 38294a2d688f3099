package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Name is the lab's name.
func (l *Lab) Name() string { return l.st.Name }

// CongestionControl is every machine's TCP congestion control.
func (l *Lab) CongestionControl() string { return l.st.CongestionControl }

// Dir is the lab directory (inventory, keys, machines' files).
func (l *Lab) Dir() string { return l.st.Dir }

// InventoryPath is the inventory that logs in to every host as root.
func (l *Lab) InventoryPath() string { return filepath.Join(l.st.Dir, "inventory.yaml") }

// DeployInventoryPath is the inventory that logs in as DeployUser with
// become: true.
func (l *Lab) DeployInventoryPath() string { return filepath.Join(l.st.Dir, "inventory-deploy.yaml") }

// KnownHostsPath holds every host's key by address.
func (l *Lab) KnownHostsPath() string { return filepath.Join(l.st.Dir, "known_hosts") }

// IdentityPath is the private key authorised for root and DeployUser on
// every host; the public key is next to it with ".pub" appended.
func (l *Lab) IdentityPath() string { return filepath.Join(l.st.Dir, "id_ed25519") }

// RegistryAddr is the registry's host:port as every lab daemon reaches it,
// or "" when the lab has none.
func (l *Lab) RegistryAddr() string { return l.registryAddr() }

// RegistryAuth is the registry's one account when it wants basic auth
// (Config.RegistryUser), else empty.
func (l *Lab) RegistryAuth() (user, password string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.RegistryUser, l.st.RegistryPassword
}

// RegistryTransport carries HTTP from the bastion's network namespace: a
// registry client outside the lab (a test pushing an index) reaches the
// lab registry through it.
func (l *Lab) RegistryTransport() http.RoundTripper {
	return &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return l.DialFrom(ctx, "bastion", network, addr)
	}}
}

// Hosts returns the names of the lab's hosts in order (h01, h02...),
// containerd hosts (Config.Containerd) last.
func (l *Lab) Hosts() []string {
	var names []string
	for _, m := range l.hostMachines() {
		names = append(names, m.Name)
	}
	return names
}

// Machine returns a copy of the record of a lab machine: a host name,
// "bastion" or "registry".
func (l *Lab) Machine(name string) (Machine, error) {
	m, err := l.machine(name)
	if err != nil {
		return Machine{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return *m, nil
}

// DockerHost is a DOCKER_HOST value that reaches the machine's daemon from
// outside the lab, e.g. for the Docker client library in a test.
func (l *Lab) DockerHost(name string) (string, error) {
	m, err := l.machine(name)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return "unix://" + m.DockerSocket(), nil
}

// Runtime is a host's container runtime: RuntimeDocker or
// RuntimeContainerd.
func (l *Lab) Runtime(name string) (string, error) {
	m, err := l.host(name)
	if err != nil {
		return "", err
	}
	return m.RuntimeOf(), nil
}

// ContainerdAddress is a containerd host's socket as a path that reaches it
// from outside the lab, e.g. for ctr --address in a test. Inside the host
// it is ContainerdSocketInHost.
func (l *Lab) ContainerdAddress(name string) (string, error) {
	m, err := l.containerdHost(name)
	if err != nil {
		return "", err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return m.ContainerdSocket(), nil
}

func (l *Lab) machine(name string) (*Machine, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.st.Machines {
		if m.Name == name {
			return m, nil
		}
	}
	return nil, fmt.Errorf("%w: %q in lab %s", ErrNoMachine, name, l.st.Name)
}

func (l *Lab) hostMachines() []*Machine {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*Machine
	for _, m := range l.st.Machines {
		if m.Role == RoleHost {
			out = append(out, m)
		}
	}
	return out
}

func (l *Lab) bastion() *Machine {
	m, _ := l.machine("bastion")
	return m
}

// Command returns a command that runs inside a lab machine: in its network
// and mount namespaces, so /var/run/docker.sock is the machine's daemon.
// On a host it starts in /root with a login-like environment; on the
// bastion it keeps this process's working directory and environment.
func (l *Lab) Command(ctx context.Context, machine string, args ...string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("run in %s: no command", machine)
	}
	m, err := l.machine(machine)
	if err != nil {
		return nil, err
	}
	prefix := m.enter()
	var env []string
	switch m.Role {
	case RoleHost:
		prefix = append(prefix, "--wd=/root")
		env = []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8",
		}
	default:
		if wd, err := os.Getwd(); err == nil {
			prefix = append(prefix, "--wd="+wd)
		}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "DOCKER_HOST=") {
				env = append(env, kv)
			}
		}
	}
	full := append(append(prefix, "--"), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = env
	return cmd, nil
}

// ExecScriptPath is a shell script in the lab directory that runs a
// command inside a lab machine like Command does, for scripts without the
// testbed command: DIR/exec bastion docker images.
func (l *Lab) ExecScriptPath() string { return filepath.Join(l.st.Dir, "exec") }

func (l *Lab) execScript() string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Run a command inside a machine of lab " + l.st.Name + ": exec MACHINE COMMAND [ARG...]\n")
	b.WriteString("if [ $# -lt 2 ]; then echo \"usage: $0 MACHINE COMMAND [ARG...]\" >&2; exit 2; fi\n")
	b.WriteString("m=$1; shift\ncase \"$m\" in\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.st.Machines {
		var words []string
		for _, a := range m.enter() {
			words = append(words, shellQuote(a))
		}
		enter := strings.Join(words, " ")
		if m.Role == RoleHost {
			fmt.Fprintf(&b, "  %s) exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 %s --wd=/root -- \"$@\" ;;\n", m.Name, enter)
		} else {
			fmt.Fprintf(&b, "  %s) unset DOCKER_HOST; exec %s --wd=\"$(pwd)\" -- \"$@\" ;;\n", m.Name, enter)
		}
	}
	b.WriteString("  *) echo \"no machine $m in lab " + l.st.Name + "\" >&2; exit 2 ;;\nesac\n")
	return b.String()
}

// Exec runs a command inside a lab machine (see Command) and returns its
// standard output; a failure carries its standard error.
func (l *Lab) Exec(ctx context.Context, machine string, args ...string) ([]byte, error) {
	cmd, err := l.Command(ctx, machine, args...)
	if err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("run %q in %s: %w: %s", strings.Join(args, " "), machine, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Dial opens a connection from the bastion's network namespace, so this
// process can reach lab addresses (SSH to a host, the registry).
func (l *Lab) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return l.DialFrom(ctx, "bastion", network, addr)
}

// DialFrom opens a connection from a lab machine's network namespace.
func (l *Lab) DialFrom(ctx context.Context, machine, network, addr string) (net.Conn, error) {
	m, err := l.machine(machine)
	if err != nil {
		return nil, err
	}
	return dialIn(ctx, m.NetnsPath(), network, addr)
}

// ListenIn opens a listener in a lab machine's network namespace.
func (l *Lab) ListenIn(machine, network, addr string) (net.Listener, error) {
	m, err := l.machine(machine)
	if err != nil {
		return nil, err
	}
	return listenIn(m.NetnsPath(), network, addr)
}

package testbed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Role says what a lab machine is for.
type Role string

// The roles of lab machines.
const (
	RoleHost     Role = "host"
	RoleBastion  Role = "bastion"
	RoleRegistry Role = "registry"
)

// Container runtimes of lab hosts (Machine.Runtime).
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
)

// ContainerdSocketInHost is containerd's socket as a containerd host sees it.
const ContainerdSocketInHost = "/run/containerd/containerd.sock"

// Machine is one machine of the lab as recorded in its state file.
type Machine struct {
	Name string `json:"name"` // h01, bastion, registry
	Role Role   `json:"role"`
	IP   string `json:"ip"`
	// Netns is the name of the network namespace (ip netns list).
	Netns string `json:"netns"`
	// MountNS is the file that pins the machine's mount namespace; empty for
	// the registry, which shares the machine's mounts.
	MountNS string `json:"mountns,omitempty"`
	// UTSNS pins the namespace that gives the machine its own hostname.
	UTSNS string `json:"utsns,omitempty"`
	// Veth is the machine's end of its link, in the default namespace and
	// joined to the lab bridge. Inside the machine the other end is eth0.
	Veth string `json:"veth"`
	// Ifb shapes what the machine sends, in the default namespace: Veth's
	// ingress is redirected through it. A packet it drops is lost on the
	// way, as at a switch port; the machine's own TCP never sees its
	// queue full (see shapeLines).
	Ifb string `json:"ifb,omitempty"`
	// Dir holds the machine's own directories (run, tmp, docker, ...).
	Dir       string `json:"dir"`
	KnownHost string `json:"known_host,omitempty"`
	// CgroupParent holds the cgroups of the machine's containers.
	CgroupParent string `json:"cgroup_parent,omitempty"`
	// Runtime is what a host runs: RuntimeDocker (dockerd, also when
	// empty) or RuntimeContainerd (containerd only). The bastion always
	// runs dockerd.
	Runtime    string `json:"runtime,omitempty"`
	Docker     Proc   `json:"docker"`
	Containerd Proc   `json:"containerd"`
	SSHD       Proc   `json:"sshd"`
	Registry   Proc   `json:"registry"`
	// Cut and RateFactor record link faults; TmpFull a full /tmp.
	Cut        bool    `json:"cut,omitempty"`
	RateFactor float64 `json:"rate_factor,omitempty"`
	TmpFull    bool    `json:"tmp_full,omitempty"`
}

// NetnsPath is the file of the machine's network namespace.
func (m *Machine) NetnsPath() string { return netnsPath(m.Netns) }

// DockerSocket is the machine's daemon socket as seen from outside the lab
// (inside the machine it is /var/run/docker.sock).
func (m *Machine) DockerSocket() string {
	p := filepath.Join(m.Dir, "run", "docker.sock")
	if len(p) < 100 || !m.Docker.Alive() {
		return p
	}
	// Unix socket paths are limited to 108 bytes; reach the same file
	// through the daemon's view of the file system instead.
	return fmt.Sprintf("/proc/%d/root/run/docker.sock", m.Docker.Pid)
}

// RuntimeOf is the machine's runtime with the default applied.
func (m *Machine) RuntimeOf() string {
	if m.Runtime == "" {
		return RuntimeDocker
	}
	return m.Runtime
}

func (m *Machine) runsContainerd() bool { return m.RuntimeOf() == RuntimeContainerd }

// ContainerdSocket is a containerd host's socket as seen from outside the
// lab (inside the host it is ContainerdSocketInHost).
func (m *Machine) ContainerdSocket() string {
	p := filepath.Join(m.Dir, "run", "containerd", "containerd.sock")
	if len(p) < 100 || !m.Containerd.Alive() {
		return p
	}
	return fmt.Sprintf("/proc/%d/root%s", m.Containerd.Pid, ContainerdSocketInHost)
}

// enter returns the nsenter prefix that runs a program inside the machine.
func (m *Machine) enter() []string {
	args := []string{"nsenter", "--net=" + m.NetnsPath()}
	if m.MountNS != "" {
		args = append(args, "--mount="+m.MountNS)
	}
	if m.UTSNS != "" {
		args = append(args, "--uts="+m.UTSNS)
	}
	return args
}

// binds lists the machine's own directories and files and where they are
// mounted inside its mount namespace, in mount order. /tmp comes last
// because the lab directory may live under the machine's /tmp.
func (m *Machine) binds() [][2]string {
	d := m.Dir
	b := [][2]string{
		{filepath.Join(d, "run"), "/run"},
		{filepath.Join(d, "docker"), "/var/lib/docker"},
		{filepath.Join(d, "etc-docker"), "/etc/docker"},
		{filepath.Join(d, "etc", "hosts"), "/etc/hosts"},
	}
	if m.Role != RoleHost {
		return b
	}
	if m.runsContainerd() {
		b = append(b,
			[2]string{filepath.Join(d, "containerd"), "/var/lib/containerd"},
			[2]string{filepath.Join(d, "etc-containerd"), "/etc/containerd"},
		)
	}
	return append(b,
		[2]string{filepath.Join(d, "ssh"), "/etc/ssh"},
		[2]string{filepath.Join(d, "etc", "passwd"), "/etc/passwd"},
		[2]string{filepath.Join(d, "etc", "group"), "/etc/group"},
		[2]string{filepath.Join(d, "etc", "shadow"), "/etc/shadow"},
		[2]string{filepath.Join(d, "etc", "sudoers"), "/etc/sudoers"},
		[2]string{filepath.Join(d, "root"), "/root"},
		[2]string{filepath.Join(d, "home"), "/home"},
		[2]string{filepath.Join(d, "tmp"), "/tmp"},
	)
}

// mountScript is run inside a new mount namespace to make it the machine's.
func (m *Machine) mountScript() string {
	var b strings.Builder
	b.WriteString("set -e\n")
	// A new mount namespace starts as a copy of the machine's, including the
	// files that pin other namespaces (other lab machines, other labs).
	// Those copies would keep the namespaces alive after their owner removes
	// them, so drop them first.
	// Detaching the directories that hold them drops most in one call each.
	fmt.Fprintf(&b, "umount -l /run/netns %s/*/ns 2>/dev/null || true\n", StateRoot)
	b.WriteString("grep ' - nsfs ' /proc/self/mountinfo | cut -d' ' -f5 | xargs -r umount -l 2>/dev/null || true\n")
	for _, bind := range m.binds() {
		fmt.Fprintf(&b, "mount --bind %s %s\n", shellQuote(bind[0]), shellQuote(bind[1]))
	}
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// machineFiles lists the files a machine needs before its mount namespace
// and daemons are made.
func (m *Machine) machineFiles(acc *accounts, clientKey []byte, etcHosts []byte) ([]fileSpec, error) {
	d := m.Dir
	dirs := []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(d, "run"), 0o755},
		{filepath.Join(d, "docker"), 0o711},
		{filepath.Join(d, "etc-docker"), 0o755},
		{filepath.Join(d, "etc"), 0o755},
	}
	if m.Role == RoleHost {
		dirs = append(dirs, []struct {
			path string
			mode os.FileMode
		}{
			{filepath.Join(d, "run", "sshd"), 0o755},
			{filepath.Join(d, "ssh"), 0o755},
			{filepath.Join(d, "ssh", "authorized_keys"), 0o755},
			{filepath.Join(d, "root"), 0o700},
			{filepath.Join(d, "home"), 0o755},
			{filepath.Join(d, "tmp"), 0o777 | os.ModeSticky},
		}...)
	}
	if m.runsContainerd() {
		dirs = append(dirs, []struct {
			path string
			mode os.FileMode
		}{
			{filepath.Join(d, "containerd"), 0o711},
			{filepath.Join(d, "etc-containerd"), 0o755},
		}...)
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir.path, dir.mode); err != nil {
			return nil, fmt.Errorf("create %s: %w", dir.path, err)
		}
		if err := os.Chmod(dir.path, dir.mode); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", dir.path, err)
		}
	}
	hostsFile := fileSpec{path: filepath.Join(d, "etc", "hosts"), data: etcHosts, mode: 0o644}
	if m.Role == RoleRegistry {
		return nil, nil
	}
	if m.Role == RoleBastion {
		// The operator's machine keeps its own names and learns the lab's.
		own, err := os.ReadFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("read /etc/hosts: %w", err)
		}
		hostsFile.data = append(own, etcHosts...)
		return []fileSpec{hostsFile}, nil
	}
	hostsFile.data = append([]byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), etcHosts...)
	home := filepath.Join(d, "home", DeployUser)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", home, err)
	}
	if err := os.Chown(home, acc.uid, acc.gid); err != nil {
		return nil, fmt.Errorf("chown %s: %w", home, err)
	}
	hostKey, hostPub, err := newKeyPair("root@" + m.Name)
	if err != nil {
		return nil, err
	}
	kh, err := knownHostsLine(m.IP, hostPub)
	if err != nil {
		return nil, err
	}
	m.KnownHost = kh
	return []fileSpec{
		{path: filepath.Join(d, "ssh", "sshd_config"), data: []byte(sshdConfig), mode: 0o644},
		{path: filepath.Join(d, "ssh", "ssh_host_ed25519_key"), data: hostKey, mode: 0o600},
		{path: filepath.Join(d, "ssh", "ssh_host_ed25519_key.pub"), data: hostPub, mode: 0o644},
		{path: filepath.Join(d, "ssh", "authorized_keys", "root"), data: clientKey, mode: 0o644},
		{path: filepath.Join(d, "ssh", "authorized_keys", DeployUser), data: clientKey, mode: 0o644},
		{path: filepath.Join(d, "etc", "passwd"), data: acc.passwd, mode: 0o644},
		{path: filepath.Join(d, "etc", "group"), data: acc.group, mode: 0o644},
		{path: filepath.Join(d, "etc", "shadow"), data: acc.shadow, mode: 0o640, gid: acc.shadowGID},
		{path: filepath.Join(d, "etc", "sudoers"), data: acc.sudoers, mode: 0o440},
		hostsFile,
	}, nil
}

// sshdConfig is every host's /etc/ssh/sshd_config.
const sshdConfig = `# layercast lab host
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile /etc/ssh/authorized_keys/%u
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
UseDNS no
MaxStartups 100:30:200
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
`

// daemonEnv is the environment of every lab daemon.
func daemonEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
	}
}

// dockerdArgs is the command line of a machine's daemon; every path is the
// daemon's default, which inside the machine is its own.
func (m *Machine) dockerdArgs(registry string) []string {
	args := append(m.enter(), "--",
		"dockerd",
		"--host", "unix:///var/run/docker.sock",
		"--data-root", "/var/lib/docker",
		"--exec-root", "/var/run/docker",
		"--pidfile", "/var/run/docker.pid",
		"--iptables=false", "--ip-masq=false", "--bridge=none",
		"--log-level", "warn",
	)
	if registry != "" {
		args = append(args, "--insecure-registry", registry)
	}
	if m.CgroupParent != "" {
		args = append(args, "--cgroup-parent", m.CgroupParent)
	}
	return args
}

func (m *Machine) sshdArgs() []string {
	return append(m.enter(), "--", "/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config")
}

// containerdArgs is the command line of a containerd host's daemon; its
// configuration is the host's /etc/containerd/config.toml.
func (m *Machine) containerdArgs() []string {
	return append(m.enter(), "--", "containerd", "--config", "/etc/containerd/config.toml")
}

// containerdFiles are a containerd host's configuration: the default
// paths, the CRI plugin as on a Kubernetes node, and the lab registry (if
// any) trusted over plain HTTP through the hosts directory, which the CRI
// plugin reads and ctr reads with --hosts-dir /etc/containerd/certs.d.
func (m *Machine) containerdFiles(registry string) []fileSpec {
	etc := filepath.Join(m.Dir, "etc-containerd")
	config := `# layercast lab host (containerd only)
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
[grpc]
  address = "` + ContainerdSocketInHost + `"
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
`
	files := []fileSpec{{path: filepath.Join(etc, "config.toml"), data: []byte(config), mode: 0o644}}
	if registry != "" {
		hosts := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", "http://"+registry, "http://"+registry)
		files = append(files, fileSpec{path: filepath.Join(etc, "certs.d", registry, "hosts.toml"), data: []byte(hosts), mode: 0o644})
	}
	return files
}

// containerdVersion asks a containerd host's daemon for its version from
// outside the lab.
func (m *Machine) containerdVersion(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", m.ContainerdSocket(), "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr version: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), "Server:") {
		return fmt.Errorf("ctr version: no server in %q", out)
	}
	return nil
}

// waitContainerd waits until a containerd host's daemon answers.
func (m *Machine) waitContainerd(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.containerdVersion(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		if !m.Containerd.Alive() {
			return fmt.Errorf("containerd exited (see %s)", filepath.Join(m.Dir, "containerd.log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for containerd: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// dockerPing asks the machine's daemon for /_ping from outside the lab.
func (m *Machine) dockerPing(ctx context.Context) error {
	sock := m.DockerSocket()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping %s: %s", sock, resp.Status)
	}
	return nil
}

// waitDocker waits until the machine's daemon answers.
func (m *Machine) waitDocker(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := m.dockerPing(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		if !m.Docker.Alive() {
			return fmt.Errorf("dockerd exited (see %s)", filepath.Join(m.Dir, "dockerd.log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for dockerd: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

package inventory

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
)

// Host is one machine of the fleet as the inventory describes it.
type Host struct {
	// Name is unique in the inventory; the operator types it in --hosts.
	Name string `yaml:"name"`
	// Address is an IP or DNS name. Empty: Name, after ~/.ssh/config.
	Address string `yaml:"address,omitempty"`
	// Port is the SSH port. 0: from ~/.ssh/config, else 22.
	Port int `yaml:"port,omitempty"`
	// User is the login user. Empty: from ~/.ssh/config, else the local user.
	User string `yaml:"user,omitempty"`
	// IdentityFile is an absolute path to a private key. Empty: from
	// ~/.ssh/config and ssh-agent.
	IdentityFile string `yaml:"identity_file,omitempty"`
	// Become runs the node binary through `sudo -n`.
	Become bool `yaml:"become,omitempty"`
	// DockerHost is DOCKER_HOST for the node; empty: the daemon's default.
	DockerHost string `yaml:"docker_host,omitempty"`
	// Runtime is where images go on the host: "docker", "containerd", or
	// empty to take Docker when it is usable and containerd otherwise.
	Runtime string `yaml:"runtime,omitempty"`
	// ContainerdAddress is containerd's socket (default
	// /run/containerd/containerd.sock), ContainerdNamespace the namespace
	// images go into (default k8s.io, the kubelet's) and
	// ContainerdSnapshotter the snapshotter they are unpacked for
	// (default: overlayfs when containerd has it).
	ContainerdAddress     string `yaml:"containerd_address,omitempty"`
	ContainerdNamespace   string `yaml:"containerd_namespace,omitempty"`
	ContainerdSnapshotter string `yaml:"containerd_snapshotter,omitempty"`
	// ProxyJump is the jump hosts to reach the host through, as OpenSSH's
	// ProxyJump: [user@]host[:port], several separated by commas, the
	// first dialled first. Empty: ~/.ssh/config's ProxyJump, if any.
	ProxyJump string `yaml:"proxy_jump,omitempty"`
	// WorkDir is the absolute directory on the host in which each job
	// makes its work dir (layercast-<job>); it must allow executing
	// programs. Empty: the first of /tmp, /var/tmp and the login user's
	// cache dir that is writable and not mounted noexec.
	WorkDir string `yaml:"work_dir,omitempty"`
	// NoNodeCache (inventory: node_cache: false) keeps no copy of the
	// node binary on the host between jobs: every job brings it anew
	// and removes it. By default the host keeps the binary of the
	// latest jobs in ~/.cache/layercast of the login user.
	NoNodeCache bool `yaml:"-"`
	// Platform is what the host runs, "os/architecture[/variant]" as an
	// image index names it ("linux/arm64"): what the bastion fetches and
	// serves for the host before it reaches it. Empty: the bastion's own.
	// The host's probe has the last word: a host that turns out to be
	// another platform fails alone, before any download.
	Platform string `yaml:"platform,omitempty"`
	// MaxRate caps the host's swarm traffic in bytes/s, its download and
	// its upload each (inventory: max_rate: 50MB/s or 400mbit); 0: the
	// job's --host-max-rate, else none.
	MaxRate int64 `yaml:"-"`
	// Labels are free-form tags for the operator.
	Labels map[string]string `yaml:"labels,omitempty"`

	// Source is where the host is defined, "inventory.yaml:12".
	Source string `yaml:"-"`
	// Groups the host belongs to, sorted.
	Groups []string `yaml:"-"`
}

// String names the host and where it is reached, as far as the inventory
// says; it is safe on a zero Host and never shows secrets.
func (h Host) String() string {
	name := h.Name
	if name == "" {
		name = "(unnamed)"
	}
	addr := h.Address
	if addr == "" {
		addr = h.Name
	}
	if h.User != "" {
		addr = h.User + "@" + addr
	}
	if h.Port != 0 {
		addr = fmt.Sprintf("%s:%d", addr, h.Port)
	}
	if addr == "" || addr == name {
		return name
	}
	return name + " (" + addr + ")"
}

// FieldError is a problem with one field of a host; Parse turns it into an
// *Error with the file and line of that field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks a host after defaults were applied. It reads the identity
// file's metadata (not its content) to say early when the key is missing.
func (h *Host) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	switch {
	case h.Name == "":
		bad("name", "is empty")
	case strings.ContainsAny(h.Name, " \t\r\n,/") || strings.HasPrefix(h.Name, "-"):
		bad("name", "%q: a host name may not contain spaces, commas or slashes, nor start with '-'", h.Name)
	}
	if strings.ContainsAny(h.Address, " \t\r\n/@") || strings.HasPrefix(h.Address, "-") {
		bad("address", "%q is not an IP address or DNS name", h.Address)
	}
	if h.Port < 0 || h.Port > 65535 {
		bad("port", "%d is not a port number", h.Port)
	}
	if strings.ContainsAny(h.User, " \t\r\n:@/") || strings.HasPrefix(h.User, "-") {
		bad("user", "%q is not a user name", h.User)
	}
	if h.IdentityFile != "" {
		if err := checkKeyFile(h.IdentityFile); err != nil {
			bad("identity_file", "%v", err)
		}
	}
	if h.DockerHost != "" && !validDockerHost(h.DockerHost) {
		bad("docker_host", "%q: want unix:///path, tcp://host:port or fd://", h.DockerHost)
	}
	switch h.Runtime {
	case "", "docker", "containerd":
	default:
		bad("runtime", "%q: want docker or containerd", h.Runtime)
	}
	if a := strings.TrimPrefix(h.ContainerdAddress, "unix://"); h.ContainerdAddress != "" && !strings.HasPrefix(a, "/") {
		bad("containerd_address", "%q: want an absolute socket path or unix:///path", h.ContainerdAddress)
	}
	if strings.ContainsAny(h.ContainerdNamespace+h.ContainerdSnapshotter, " \t\r\n/") {
		bad("containerd_namespace", "%q / snapshotter %q: names without spaces or slashes", h.ContainerdNamespace, h.ContainerdSnapshotter)
	}
	if h.ProxyJump != "" {
		for _, hop := range strings.Split(h.ProxyJump, ",") {
			if hop == "" || strings.ContainsAny(hop, " \t\r\n/") || strings.HasPrefix(hop, "-") {
				bad("proxy_jump", "%q: want [user@]host[:port], several separated by commas", h.ProxyJump)
				break
			}
		}
	}
	if h.WorkDir != "" && (!path.IsAbs(h.WorkDir) || path.Clean(h.WorkDir) != h.WorkDir || h.WorkDir == "/" || strings.ContainsAny(h.WorkDir, "\r\n")) {
		bad("work_dir", "%q: want an absolute directory such as /var/tmp (not / itself)", h.WorkDir)
	}
	if h.Platform != "" && !validPlatform(h.Platform) {
		bad("platform", "%q: want os/architecture[/variant] in lower case, e.g. linux/arm64", h.Platform)
	}
	if h.MaxRate < 0 {
		bad("max_rate", "%d is negative", h.MaxRate)
	}
	for k := range h.Labels {
		if k == "" {
			bad("labels", "a label has an empty key")
		}
	}
	return errors.Join(errs...)
}

func checkKeyFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case err != nil:
		return fmt.Errorf("cannot read %s: %v", path, err)
	case st.IsDir():
		return fmt.Errorf("%s is a directory, not a private key", path)
	}
	return nil
}

func validDockerHost(s string) bool {
	for _, p := range []string{"unix:///", "tcp://", "fd://", "npipe://", "ssh://"} {
		if strings.HasPrefix(s, p) && len(s) > len(p) || s == "fd://" {
			return true
		}
	}
	return false
}

// validPlatform reports whether s reads as os/architecture[/variant].
func validPlatform(s string) bool {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || strings.ToLower(s) != s {
		return false
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " \t\r\n") {
			return false
		}
	}
	return true
}

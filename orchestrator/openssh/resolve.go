package openssh

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// maxJumpDepth bounds ProxyJump chains (including jump hosts that have
// their own ProxyJump).
const maxJumpDepth = 8

// Target is where and how one SSH hop is reached, after the inventory,
// ~/.ssh/config and OpenSSH's defaults were applied, in that order.
type Target struct {
	// Alias is the name ~/.ssh/config was matched with: the inventory's
	// address, else its name (or the jump host as written in ProxyJump).
	Alias    string
	HostName string
	Port     int
	User     string
	// IdentityFiles to offer, in order, and where they come from.
	IdentityFiles  []string
	IdentitySource IdentitySource
	// IdentitiesOnly: offer no agent key that is not one of IdentityFiles.
	IdentitiesOnly bool
	// Jumps are the ProxyJump hops, the first one dialled first.
	Jumps []Target
	// KnownHosts are the user's known_hosts files for the hop (a new key
	// is recorded in the first), GlobalKnownHosts the system's; both are
	// read, and a revocation in any of them wins. HostKeyAlias, when set,
	// is the name the hop's key is looked up and recorded under.
	KnownHosts       []string
	GlobalKnownHosts []string
	HostKeyAlias     string
}

// KeyAddr is the name the hop's host key is looked up under in
// known_hosts, as host:port: HostKeyAlias when set (OpenSSH looks it up
// without a port), else the address dialled.
func (t Target) KeyAddr() string {
	if t.HostKeyAlias != "" {
		return net.JoinHostPort(t.HostKeyAlias, "22")
	}
	return t.Addr()
}

// IdentitySource says who named a hop's identity files, which decides how
// a problem with one is treated.
type IdentitySource string

const (
	// FromInventory: any problem with the file is an error.
	FromInventory IdentitySource = "inventory"
	// FromSSHConfig: a missing file is skipped (as OpenSSH does); an
	// unreadable or encrypted one is an error.
	FromSSHConfig IdentitySource = "ssh_config"
	// FromDefaults: OpenSSH's ~/.ssh/id_*; unusable ones are skipped.
	FromDefaults IdentitySource = "default"
)

// Addr is host:port for dialling and for known_hosts.
func (t Target) Addr() string { return net.JoinHostPort(t.HostName, strconv.Itoa(t.Port)) }

func (t Target) String() string { return t.User + "@" + t.Addr() }

// sshConfig reads one ssh_config file; a nil *sshConfig answers nothing.
type sshConfig struct {
	path string
	cfg  *ssh_config.Config
}

func loadSSHConfig(path string) (*sshConfig, error) {
	if path == "" || path == "none" {
		return &sshConfig{}, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &sshConfig{path: path}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSSHConfig, err)
	}
	defer f.Close()
	cfg, err := ssh_config.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrSSHConfig, path, err)
	}
	return &sshConfig{path: path, cfg: cfg}, nil
}

func (c *sshConfig) get(alias, key string) (string, error) {
	if c == nil || c.cfg == nil {
		return "", nil
	}
	v, err := c.cfg.Get(alias, key)
	if err != nil {
		return "", fmt.Errorf("%w: %s: %s for %s: %v", ErrSSHConfig, c.path, key, alias, err)
	}
	return v, nil
}

func (c *sshConfig) getAll(alias, key string) ([]string, error) {
	if c == nil || c.cfg == nil {
		return nil, nil
	}
	v, err := c.cfg.GetAll(alias, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s for %s: %v", ErrSSHConfig, c.path, key, alias, err)
	}
	return v, nil
}

// resolver applies ~/.ssh/config and OpenSSH's defaults.
type resolver struct {
	cfg       *sshConfig
	home      string
	localUser string
	// knownHosts, when set, is the one user known_hosts file (the
	// inventory's), as `ssh -o UserKnownHostsFile=` would have it;
	// globalKnownHosts are the system's files unless ssh_config names
	// others.
	knownHosts       string
	globalKnownHosts []string
}

// resolveHost builds the Target for an inventory host. Fields the inventory
// sets win over ~/.ssh/config.
func (r *resolver) resolveHost(h inventory.Host) (Target, error) {
	alias := h.Address
	if alias == "" {
		alias = h.Name
	}
	var idents []string
	if h.IdentityFile != "" {
		idents = []string{h.IdentityFile}
	}
	return r.resolve(spec{alias: alias, hostName: h.Address, port: h.Port, user: h.User, identities: idents, jump: h.ProxyJump}, 0)
}

// spec is what is known of a hop before ~/.ssh/config.
type spec struct {
	alias      string
	hostName   string // explicit; empty: HostName from config, else alias
	port       int    // 0: from config, else 22
	user       string
	identities []string
	jump       string // explicit ProxyJump; empty: from config
}

func (r *resolver) resolve(s spec, depth int) (Target, error) {
	if depth > maxJumpDepth {
		return Target{}, fmt.Errorf("%w: ProxyJump chain for %s is longer than %d hops (a loop?)", ErrSSHConfig, s.alias, maxJumpDepth)
	}
	t := Target{Alias: s.alias, HostName: s.hostName, Port: s.port, User: s.user}
	get := func(key string) (string, error) { return r.cfg.get(s.alias, key) }

	if t.HostName == "" {
		v, err := get("HostName")
		if err != nil {
			return Target{}, err
		}
		t.HostName = s.alias
		if v != "" {
			t.HostName = r.expand(v, s.alias, t)
		}
	}
	if t.Port == 0 {
		v, err := get("Port")
		if err != nil {
			return Target{}, err
		}
		t.Port = 22
		if v != "" {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return Target{}, fmt.Errorf("%w: %s: Port %q for %s is not a port number", ErrSSHConfig, r.cfg.path, v, s.alias)
			}
			t.Port = p
		}
	}
	if t.User == "" {
		v, err := get("User")
		if err != nil {
			return Target{}, err
		}
		t.User = r.localUser
		if v != "" {
			t.User = r.expand(v, s.alias, t)
		}
	}
	if only, err := get("IdentitiesOnly"); err != nil {
		return Target{}, err
	} else {
		t.IdentitiesOnly = strings.EqualFold(only, "yes")
	}
	switch {
	case len(s.identities) > 0:
		t.IdentityFiles, t.IdentitySource = s.identities, FromInventory
	default:
		files, err := r.cfg.getAll(s.alias, "IdentityFile")
		if err != nil {
			return Target{}, err
		}
		for _, f := range files {
			if strings.EqualFold(f, "none") {
				continue
			}
			t.IdentityFiles = append(t.IdentityFiles, r.expandPath(r.expand(f, s.alias, t)))
			t.IdentitySource = FromSSHConfig
		}
		if len(t.IdentityFiles) == 0 {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				t.IdentityFiles = append(t.IdentityFiles, filepath.Join(r.home, ".ssh", n))
			}
			t.IdentitySource = FromDefaults
		}
	}

	if err := r.knownHostsFiles(&t, get); err != nil {
		return Target{}, err
	}

	jump, err := get("ProxyJump")
	if err != nil {
		return Target{}, err
	}
	jumpFrom := r.cfg.path
	if s.jump != "" {
		jump, jumpFrom = s.jump, "the inventory"
	}
	if jump == "" || strings.EqualFold(jump, "none") {
		if pc, err := get("ProxyCommand"); err != nil {
			return Target{}, err
		} else if pc != "" && !strings.EqualFold(pc, "none") {
			return Target{}, fmt.Errorf("%w: %s: ProxyCommand for %s is not supported; use ProxyJump", ErrSSHConfig, r.cfg.path, s.alias)
		}
		return t, nil
	}
	for i, hop := range strings.Split(jump, ",") {
		js, err := parseJump(strings.TrimSpace(hop))
		if err != nil {
			return Target{}, fmt.Errorf("%w: %s: ProxyJump for %s: %v", ErrSSHConfig, jumpFrom, s.alias, err)
		}
		jt, err := r.resolve(js, depth+1)
		if err != nil {
			return Target{}, err
		}
		if i > 0 {
			// Only the first hop is reached with its own ProxyJump, as
			// OpenSSH does; later hops go through the previous one.
			jt.Jumps = nil
			t.Jumps = append(t.Jumps, jt)
			continue
		}
		t.Jumps = append(t.Jumps, jt.Jumps...)
		jt.Jumps = nil
		t.Jumps = append(t.Jumps, jt)
	}
	if len(t.Jumps) > maxJumpDepth {
		return Target{}, fmt.Errorf("%w: ProxyJump chain for %s is longer than %d hops", ErrSSHConfig, s.alias, maxJumpDepth)
	}
	return t, nil
}

// knownHostsFiles sets the known_hosts files and HostKeyAlias of a hop
// as OpenSSH would: UserKnownHostsFile (default ~/.ssh/known_hosts and
// ~/.ssh/known_hosts2; the inventory's file replaces them),
// GlobalKnownHostsFile (default /etc/ssh/ssh_known_hosts and
// /etc/ssh/ssh_known_hosts2), several files separated by spaces, "none"
// for none.
func (r *resolver) knownHostsFiles(t *Target, get func(string) (string, error)) error {
	files := func(key string, def []string) ([]string, error) {
		v, err := get(key)
		if err != nil || v == "" {
			return def, err
		}
		if strings.EqualFold(v, "none") {
			return []string{}, nil
		}
		var out []string
		for _, f := range strings.Fields(v) {
			out = append(out, r.expandPath(r.expand(f, t.Alias, *t)))
		}
		return out, nil
	}
	var err error
	if r.knownHosts != "" {
		t.KnownHosts = []string{r.knownHosts}
	} else if t.KnownHosts, err = files("UserKnownHostsFile", []string{
		filepath.Join(r.home, ".ssh", "known_hosts"), filepath.Join(r.home, ".ssh", "known_hosts2"),
	}); err != nil {
		return err
	}
	global := r.globalKnownHosts
	if global == nil {
		global = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	if t.GlobalKnownHosts, err = files("GlobalKnownHostsFile", global); err != nil {
		return err
	}
	t.HostKeyAlias, err = get("HostKeyAlias")
	return err
}

// parseJump reads one ProxyJump hop: [user@]host[:port] or
// ssh://[user@]host[:port].
func parseJump(s string) (spec, error) {
	if s == "" {
		return spec{}, errors.New("empty hop")
	}
	if !strings.HasPrefix(s, "ssh://") {
		s = "ssh://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
		return spec{}, fmt.Errorf("%q is not [user@]host[:port]", strings.TrimPrefix(s, "ssh://"))
	}
	sp := spec{alias: u.Hostname()}
	if u.User != nil {
		sp.user = u.User.Username()
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return spec{}, fmt.Errorf("%q: bad port", s)
		}
		sp.port = n
	}
	return sp, nil
}

// expand replaces the ssh_config tokens %h %p %r %u %d %n %%.
func (r *resolver) expand(v, alias string, t Target) string {
	if !strings.Contains(v, "%") {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' || i+1 == len(v) {
			b.WriteByte(v[i])
			continue
		}
		i++
		switch v[i] {
		case 'h':
			h := t.HostName
			if h == "" {
				h = alias
			}
			b.WriteString(h)
		case 'n':
			b.WriteString(alias)
		case 'p':
			if t.Port != 0 {
				b.WriteString(strconv.Itoa(t.Port))
			} else {
				b.WriteString("22")
			}
		case 'r':
			b.WriteString(t.User)
		case 'u':
			b.WriteString(r.localUser)
		case 'd':
			b.WriteString(r.home)
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(v[i])
		}
	}
	return b.String()
}

func (r *resolver) expandPath(p string) string {
	if p == "~" {
		return r.home
	}
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		return filepath.Join(r.home, rest)
	}
	if !filepath.IsAbs(p) {
		// OpenSSH takes relative identity files from the current directory.
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return p
}

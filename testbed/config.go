package testbed

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxHosts is the largest lab Up builds: host addresses live in one /24
// next to the bastion and the registry.
const MaxHosts = 200

// DefaultRate is the link rate when Config.Rate is empty.
const DefaultRate = "1gbit"

// DefaultCongestionControl is every lab machine's TCP congestion control
// when Config.CongestionControl is empty: Linux's default, which most
// hosts run. A network namespace otherwise starts with whatever the
// machine the lab runs on was set to, so the same bench behaved
// differently from one build machine to the next.
const DefaultCongestionControl = "cubic"

// ErrInvalidConfig reports a Config that Up cannot build.
var ErrInvalidConfig = errors.New("invalid lab config")

// Config describes a lab to bring up.
type Config struct {
	// Name tells labs on one machine apart; it picks the lab's state file,
	// default directory, and (through a slot) its interface names and subnet.
	// Lower-case letters, digits and '-', at most 32 characters. Default "lab".
	Name string
	// Hosts is the number of hosts, 1..MaxHosts.
	Hosts int
	// Containerd is how many of the hosts, the last ones, run containerd
	// only, as a Kubernetes node does: Debian's containerd with its CRI
	// plugin, its socket at /run/containerd/containerd.sock inside the
	// host, no dockerd. 0..Hosts; the others run dockerd.
	Containerd int
	// Rate shapes every link in both directions, in tc's notation
	// ("100mbit", "1gbit"). Default DefaultRate.
	Rate string
	// Delay is added on the way out of every machine, so it is the one-way
	// latency between any two lab machines.
	Delay time.Duration
	// CongestionControl is every machine's TCP congestion control
	// (net.ipv4.tcp_congestion_control of its network namespace), one of
	// the kernel's tcp_available_congestion_control. Default
	// DefaultCongestionControl.
	CongestionControl string
	// Registry adds a machine running docker-registry on port 5000 that
	// every daemon of the lab trusts.
	Registry bool
	// RegistryUser and RegistryPassword, when set, put the registry behind
	// htpasswd basic auth with this one account. MakeImage logs in with
	// it (in a Docker config of its own, removed after the push); jobs
	// need credentials of their own.
	RegistryUser, RegistryPassword string
	// Dir receives the inventory, keys and every machine's files.
	// Default /tmp/layercast-lab-NAME. Up removes it on Down.
	Dir string
	// Parallel bounds how many hosts are set up at once. Default 16.
	Parallel int
	// Ephemeral ties the lab to this process: once the process has gone
	// (a test binary killed before its cleanup ran), the next Up on this
	// machine takes the lab down. UpForTest sets it.
	Ephemeral bool
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	ccRE   = regexp.MustCompile(`^[a-z0-9_]{1,16}$`)
)

// withDefaults returns c with every empty field set, or an error naming the
// first field that cannot be used.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = "lab"
	}
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("%w: name %q: want lower-case letters, digits and '-', at most 32", ErrInvalidConfig, c.Name)
	}
	if c.Hosts < 1 || c.Hosts > MaxHosts {
		return c, fmt.Errorf("%w: hosts %d: want 1..%d", ErrInvalidConfig, c.Hosts, MaxHosts)
	}
	if c.Containerd < 0 || c.Containerd > c.Hosts {
		return c, fmt.Errorf("%w: containerd hosts %d: want 0..%d (the hosts)", ErrInvalidConfig, c.Containerd, c.Hosts)
	}
	if c.Rate == "" {
		c.Rate = DefaultRate
	}
	if _, err := ParseRate(c.Rate); err != nil {
		return c, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if (c.RegistryUser == "") != (c.RegistryPassword == "") || c.RegistryUser != "" && !c.Registry {
		return c, fmt.Errorf("%w: registry auth needs a registry, a user and a password", ErrInvalidConfig)
	}
	if strings.ContainsAny(c.RegistryUser, ":\n") {
		return c, fmt.Errorf("%w: registry user %q", ErrInvalidConfig, c.RegistryUser)
	}
	if c.CongestionControl == "" {
		c.CongestionControl = DefaultCongestionControl
	}
	if !ccRE.MatchString(c.CongestionControl) {
		return c, fmt.Errorf("%w: congestion control %q: want a name such as cubic or bbr", ErrInvalidConfig, c.CongestionControl)
	}
	if c.Delay < 0 {
		return c, fmt.Errorf("%w: negative delay %v", ErrInvalidConfig, c.Delay)
	}
	if c.Dir == "" {
		c.Dir = filepath.Join("/tmp", "layercast-lab-"+c.Name)
	}
	dir, err := filepath.Abs(c.Dir)
	if err != nil {
		return c, fmt.Errorf("%w: dir %q: %w", ErrInvalidConfig, c.Dir, err)
	}
	c.Dir = dir
	if c.Parallel <= 0 {
		c.Parallel = 16
	}
	return c, nil
}

// ParseRate reads a rate in tc's notation ("100mbit", "2.5gbit", "800kbit",
// "1000000bit") and returns bits per second.
func ParseRate(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}
	low := strings.ToLower(strings.TrimSpace(s))
	for _, u := range units {
		if num, ok := strings.CutSuffix(low, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v <= 0 {
				break
			}
			return int64(v * u.mult), nil
		}
	}
	return 0, fmt.Errorf("rate %q: want a number followed by bit, kbit, mbit, gbit or tbit", s)
}

// ParseSize reads a byte size such as "500MB", "1.5GiB", "64k" or "1024".
// Decimal units (kB, MB, GB) are powers of 1000, binary ones (KiB, MiB,
// GiB) powers of 1024; a bare K, M or G counts as binary.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
		{"b", 1}, {"", 1},
	}
	low := strings.ToLower(strings.TrimSpace(s))
	for _, u := range units {
		if num, ok := strings.CutSuffix(low, u.suffix); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || v < 0 {
				break
			}
			return int64(v * u.mult), nil
		}
	}
	return 0, fmt.Errorf("size %q: want a number with an optional unit (B, kB, MB, GB, KiB, MiB, GiB)", s)
}

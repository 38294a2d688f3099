package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// StateRoot holds one directory per lab on this machine (its state file and
// the files that pin its mount namespaces) and the lock that allocates
// slots.
const StateRoot = "/run/layercast-testbed"

// maxSlots bounds the labs on one machine: slot N owns interface and
// namespace names starting "lcN-" and the subnet 10.99.N.0/24.
const maxSlots = 250

// Sentinel errors.
var (
	ErrNotRoot     = errors.New("testbed needs root")
	ErrNoLab       = errors.New("no such lab")
	ErrNoMachine   = errors.New("no such lab machine")
	ErrDirNotEmpty = errors.New("lab directory is not empty and holds no lab")
	ErrNoFreeSlot  = errors.New("no free lab slot")
)

// labState is what the state file records: enough for another process to
// find every namespace, link, mount, process and file of the lab.
type labState struct {
	Name       string        `json:"name"`
	Slot       int           `json:"slot"`
	Dir        string        `json:"dir"`
	CreatedDir bool          `json:"created_dir"`
	Bridge     string        `json:"bridge"`
	Subnet     string        `json:"subnet"` // first three octets
	Rate       int64         `json:"rate_bps"`
	Delay      time.Duration `json:"delay_ns"`
	// CongestionControl is every machine's TCP congestion control.
	CongestionControl string `json:"congestion_control"`
	Registry          bool   `json:"registry"`
	// RegistryUser and RegistryPassword are the registry's one account
	// when it wants basic auth: the lab's own test credentials.
	RegistryUser     string `json:"registry_user,omitempty"`
	RegistryPassword string `json:"registry_password,omitempty"`
	DeployUID        int    `json:"deploy_uid"`
	// Owner is the process an ephemeral lab belongs to.
	Owner     Proc       `json:"owner,omitempty"`
	Machines  []*Machine `json:"machines"`
	CreatedAt time.Time  `json:"created_at"`
}

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	log *slog.Logger

	mu sync.Mutex
	st labState
}

func labStateDir(name string) string  { return filepath.Join(StateRoot, name) }
func labStateFile(name string) string { return filepath.Join(labStateDir(name), "state.json") }
func labNSDir(name string) string     { return filepath.Join(labStateDir(name), "ns") }

// Up builds a lab and waits until every daemon answers. A lab of the same
// name left over from an earlier run is taken down first. On failure
// everything already made is removed again.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if err := EnsureDeps(ctx); err != nil {
		return nil, err
	}
	if err := raiseNeighLimits(slog.Default().With("lab", cfg.Name), cfg.Hosts+2); err != nil {
		return nil, err
	}
	if err := allowCongestionControl(slog.Default().With("lab", cfg.Name), cfg.CongestionControl); err != nil {
		return nil, err
	}
	lab, err := reserve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := lab.build(ctx, cfg); err != nil {
		derr := lab.Down(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("bring up lab %s: %w", cfg.Name, err), derr)
	}
	return lab, nil
}

// Open finds a running lab by name through its state file.
func Open(name string) (*Lab, error) {
	b, err := os.ReadFile(labStateFile(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNoLab, name)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	l := &Lab{log: slog.Default().With("lab", name)}
	if err := json.Unmarshal(b, &l.st); err != nil {
		return nil, fmt.Errorf("parse lab state %s: %w", labStateFile(name), err)
	}
	return l, nil
}

// List returns the names of the labs recorded on this machine.
func List() ([]string, error) {
	entries, err := os.ReadDir(StateRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list labs: %w", err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(labStateFile(e.Name())); err == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// lockSlots takes the machine-wide lock that guards slot allocation.
func lockSlots() (func(), error) {
	if err := os.MkdirAll(StateRoot, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", StateRoot, err)
	}
	f, err := os.OpenFile(filepath.Join(StateRoot, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open slot lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("take slot lock: %w", err)
	}
	return func() { _ = f.Close() }, nil
}

// reserve cleans a stale lab of the same name, picks a free slot, plans
// every machine and records the plan, so that Down finds whatever Up gets
// to make.
func reserve(ctx context.Context, cfg Config) (*Lab, error) {
	unlock, err := lockSlots()
	if err != nil {
		return nil, err
	}
	defer unlock()

	sweepOrphans(ctx, cfg.Name)
	if old, err := Open(cfg.Name); err == nil {
		slog.Warn("taking down stale lab", "lab", cfg.Name, "dir", old.st.Dir)
		if err := old.Down(ctx); err != nil {
			return nil, fmt.Errorf("take down stale lab %s: %w", cfg.Name, err)
		}
	} else if !errors.Is(err, ErrNoLab) {
		return nil, err
	}

	createdDir, err := prepareDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	slot, err := freeSlot(ctx)
	if err != nil {
		return nil, err
	}
	rate, _ := ParseRate(cfg.Rate)
	prefix := fmt.Sprintf("lc%d-", slot)
	subnet := fmt.Sprintf("10.99.%d", slot)
	st := labState{
		Name: cfg.Name, Slot: slot, Dir: cfg.Dir, CreatedDir: createdDir,
		Bridge: prefix + "br", Subnet: subnet, Rate: rate, Delay: cfg.Delay, CongestionControl: cfg.CongestionControl,
		Registry: cfg.Registry, RegistryUser: cfg.RegistryUser, RegistryPassword: cfg.RegistryPassword, CreatedAt: time.Now(),
	}
	machine := func(name string, role Role, ip int, short string) *Machine {
		m := &Machine{
			Name: name, Role: role, IP: fmt.Sprintf("%s.%d", subnet, ip),
			Netns: prefix + name, Veth: prefix + short, Ifb: prefix + "i" + short,
			Dir: filepath.Join(cfg.Dir, "machines", name),
		}
		if role != RoleRegistry {
			m.MountNS = filepath.Join(labNSDir(cfg.Name), name)
			m.UTSNS = filepath.Join(labNSDir(cfg.Name), name+".uts")
			m.CgroupParent = "/" + labCgroup(cfg.Name) + "/" + name
		}
		return m
	}
	st.Machines = append(st.Machines, machine("bastion", RoleBastion, 2, "b"))
	if cfg.Registry {
		st.Machines = append(st.Machines, machine("registry", RoleRegistry, 3, "r"))
	}
	width := max(2, len(strconv.Itoa(cfg.Hosts)))
	for i := 1; i <= cfg.Hosts; i++ {
		m := machine(fmt.Sprintf("h%0*d", width, i), RoleHost, 10+i, "h"+strconv.Itoa(i))
		if i > cfg.Hosts-cfg.Containerd {
			m.Runtime = RuntimeContainerd
		}
		st.Machines = append(st.Machines, m)
	}
	if cfg.Ephemeral {
		start, err := procStart(os.Getpid())
		if err != nil {
			return nil, fmt.Errorf("read own start time: %w", err)
		}
		st.Owner = Proc{Pid: os.Getpid(), Start: start}
	}
	l := &Lab{log: slog.Default().With("lab", cfg.Name), st: st}
	if err := os.MkdirAll(labNSDir(cfg.Name), 0o755); err != nil {
		return nil, fmt.Errorf("create lab state dir: %w", err)
	}
	if err := l.save(); err != nil {
		return nil, err
	}
	return l, nil
}

// sweepOrphans takes down every ephemeral lab whose owner has exited,
// except the one named keep (Up handles that one itself).
func sweepOrphans(ctx context.Context, keep string) {
	names, err := List()
	if err != nil {
		return
	}
	for _, n := range names {
		l, err := Open(n)
		if err != nil || n == keep || l.st.Owner.Pid == 0 || l.st.Owner.Alive() {
			continue
		}
		slog.Warn("taking down lab whose owner has exited", "lab", n, "owner", l.st.Owner.Pid)
		if err := l.Down(ctx); err != nil {
			slog.Warn("take down orphaned lab", "lab", n, "err", err)
		}
	}
}

// labMarker marks a directory as a lab directory, so a later Up may clear it.
const labMarker = ".layercast-lab"

// prepareDir makes sure dir exists and holds nothing but an old lab's files.
func prepareDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return false, fmt.Errorf("create lab dir: %w", err)
		}
		return true, writeMarker(dir)
	}
	if err != nil {
		return false, fmt.Errorf("read lab dir: %w", err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, labMarker)); err != nil {
			return false, fmt.Errorf("%w: %s", ErrDirNotEmpty, dir)
		}
		if err := clearDir(dir); err != nil {
			return false, err
		}
	}
	return false, writeMarker(dir)
}

func writeMarker(dir string) error {
	return os.WriteFile(filepath.Join(dir, labMarker), []byte("made by layercast testbed; removed by testbed down\n"), 0o644)
}

// clearDir removes everything inside dir.
func clearDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("remove lab files: %w", err)
		}
	}
	return nil
}

// freeSlot returns the lowest slot that no lab records and no namespace or
// interface on the machine uses.
func freeSlot(ctx context.Context) (int, error) {
	used := map[int]bool{}
	names, err := List()
	if err != nil {
		return 0, err
	}
	for _, n := range names {
		if l, err := Open(n); err == nil {
			used[l.st.Slot] = true
		}
	}
	var taken []string
	if out, err := run(ctx, nil, "ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				taken = append(taken, f[0])
			}
		}
	}
	if out, err := run(ctx, nil, "ip", "-o", "link", "show"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				taken = append(taken, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
			}
		}
	}
	for _, name := range taken {
		var slot int
		var rest string
		if n, _ := fmt.Sscanf(name, "lc%d-%s", &slot, &rest); n == 2 {
			used[slot] = true
		}
	}
	for s := 0; s < maxSlots; s++ {
		if !used[s] {
			return s, nil
		}
	}
	return 0, ErrNoFreeSlot
}

// save writes the state file atomically.
func (l *Lab) save() error {
	l.mu.Lock()
	b, err := json.MarshalIndent(l.st, "", "  ")
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("encode lab state: %w", err)
	}
	path := labStateFile(l.st.Name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	// A copy next to the inventory for people and scripts.
	if _, err := os.Stat(l.st.Dir); err == nil {
		_ = os.WriteFile(filepath.Join(l.st.Dir, "lab.json"), b, 0o644)
	}
	return nil
}

// build makes everything reserve planned.
func (l *Lab) build(ctx context.Context, cfg Config) error {
	start := time.Now()
	nsDir := labNSDir(l.st.Name)
	// Files that pin mount namespaces must sit on a private mount, or the
	// kernel refuses the bind (the same trick ip netns uses for /run/netns).
	if _, err := run(ctx, nil, "mount", "--bind", nsDir, nsDir); err != nil {
		return fmt.Errorf("pin namespace dir: %w", err)
	}
	if _, err := run(ctx, nil, "mount", "--make-private", nsDir); err != nil {
		return fmt.Errorf("pin namespace dir: %w", err)
	}
	if err := runBatch(ctx, []string{
		// Bridged lab traffic bypasses the machine's firewall (br_netfilter).
		"link add " + l.st.Bridge + " type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0",
		"link set " + l.st.Bridge + " addrgenmode none",
		"link set " + l.st.Bridge + " up",
	}, "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("create bridge: %w", err)
	}
	mountPoints := []string{"/var/lib/docker"}
	if cfg.Containerd > 0 {
		mountPoints = append(mountPoints, "/var/lib/containerd", "/etc/containerd")
	}
	for _, p := range mountPoints {
		if err := os.MkdirAll(p, 0o711); err != nil {
			return fmt.Errorf("create mount point %s: %w", p, err)
		}
	}

	clientKey, clientPub, err := newKeyPair("layercast-lab-" + l.st.Name)
	if err != nil {
		return err
	}
	if err := writeFiles([]fileSpec{
		{path: l.IdentityPath(), data: clientKey, mode: 0o600},
		{path: l.IdentityPath() + ".pub", data: clientPub, mode: 0o644},
	}); err != nil {
		return err
	}
	acc, err := labAccounts()
	if err != nil {
		return err
	}
	l.st.DeployUID = acc.uid

	var etcHosts strings.Builder
	etcHosts.WriteString("# layercast lab " + l.st.Name + "\n")
	for _, m := range l.st.Machines {
		fmt.Fprintf(&etcHosts, "%s\t%s\n", m.IP, m.Name)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Parallel)
	for _, m := range l.st.Machines {
		g.Go(func() error {
			if err := l.setupMachine(gctx, m, acc, clientPub, []byte(etcHosts.String())); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			return nil
		})
	}
	err = g.Wait()
	if serr := l.save(); serr != nil {
		return errors.Join(err, serr)
	}
	if err != nil {
		return err
	}
	l.log.Info("machines started, waiting for daemons", "elapsed", time.Since(start).Round(time.Millisecond))

	if err := l.waitReady(ctx, readyTimeout(len(l.st.Machines))); err != nil {
		return err
	}
	hosts := l.hostMachines()
	if err := writeInventory(l.InventoryPath(), hosts, "root", 4); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	if err := writeInventory(l.DeployInventoryPath(), hosts, DeployUser, 4); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	if err := writeKnownHosts(l.KnownHostsPath(), hosts); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	if err := os.WriteFile(l.ExecScriptPath(), []byte(l.execScript()), 0o755); err != nil {
		return fmt.Errorf("write exec script: %w", err)
	}
	l.log.Info("lab up", "hosts", len(hosts), "elapsed", time.Since(start).Round(time.Millisecond))
	return l.save()
}

// readyTimeout bounds the wait for the daemons of a lab of n machines once
// they are started. Their starts share the machine's cores: on a fresh
// 2-core machine, 200 hosts' dockerd and sshd answered only after 2.5
// minutes, and the fixed 90 s this was before failed every 200-host lab.
func readyTimeout(n int) time.Duration { return 90*time.Second + time.Duration(n)*time.Second }

// setupMachine makes one machine's namespaces, link, files and daemons.
func (l *Lab) setupMachine(ctx context.Context, m *Machine, acc *accounts, clientPub, etcHosts []byte) error {
	if err := runBatch(ctx, []string{
		"netns add " + m.Netns,
		"link add " + m.Veth + " type veth peer name eth0 netns " + m.Netns,
		"link set " + m.Veth + " addrgenmode none",
		"link set " + m.Veth + " master " + l.st.Bridge + " up",
		"link add " + m.Ifb + " type ifb",
		"link set " + m.Ifb + " up",
	}, "ip", "-batch", "-"); err != nil {
		return fmt.Errorf("create link (the IFB that shapes what the machine sends needs the kernel's ifb): %w", err)
	}
	if err := runBatch(ctx, []string{
		"addr add " + m.IP + "/24 dev eth0",
		"link set eth0 up",
		"link set lo up",
	}, "ip", "-n", m.Netns, "-batch", "-"); err != nil {
		return fmt.Errorf("configure eth0: %w", err)
	}
	if err := setCongestionControl(m.NetnsPath(), l.st.CongestionControl); err != nil {
		return err
	}
	// Traffic towards the machine is shaped where it leaves the bridge,
	// traffic from it on the IFB its link's ingress is redirected to; the
	// delay is added once, on the way out of the machine.
	shape := append(shapeLines(m.Veth, l.st.Rate), shapeLines(m.Ifb, l.st.Rate)...)
	shape = append(shape, redirectLines(m.Veth, m.Ifb)...)
	if err := runBatch(ctx, shape, "tc", "-batch", "-"); err != nil {
		return fmt.Errorf("shape link: %w", err)
	}
	if l.st.Delay > 0 {
		if err := runBatch(ctx, []string{delayLine("eth0", l.st.Delay)}, "tc", "-n", m.Netns, "-batch", "-"); err != nil {
			return fmt.Errorf("delay link (a delay needs the kernel's netem qdisc): %w", err)
		}
	}
	files, err := m.machineFiles(acc, clientPub, etcHosts)
	if err != nil {
		return err
	}
	if m.Role == RoleHost && m.runsContainerd() {
		files = append(files, m.containerdFiles(l.registryAddr())...)
	}
	if err := writeFiles(files); err != nil {
		return err
	}
	if m.Role == RoleRegistry {
		return l.startRegistry(m)
	}
	for _, f := range []string{m.MountNS, m.UTSNS} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			return fmt.Errorf("create namespace file: %w", err)
		}
	}
	if _, err := run(ctx, nil, "unshare", "--mount="+m.MountNS, "--uts="+m.UTSNS, "--propagation", "private", "hostname", m.Name); err != nil {
		return fmt.Errorf("create mount namespace: %w", err)
	}
	if _, err := run(ctx, nil, "nsenter", "--mount="+m.MountNS, "sh", "-c", m.mountScript()); err != nil {
		return fmt.Errorf("set up mount namespace: %w", err)
	}
	if m.runsContainerd() {
		if err := l.startContainerd(m); err != nil {
			return err
		}
	} else if err := l.startDocker(m); err != nil {
		return err
	}
	if m.Role == RoleHost {
		return l.startSSHD(m)
	}
	return nil
}

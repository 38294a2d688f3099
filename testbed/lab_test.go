package testbed_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/layercast/layercast/testbed"
)

// sshClient logs in to a lab host the way layercast does: the lab's key,
// strict host key checking against the lab's known_hosts only.
func sshClient(t *testing.T, lab *testbed.Lab, host, user string) *ssh.Client {
	t.Helper()
	m, err := lab.Machine(host)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(lab.IdentityPath())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostKeys, err := knownhosts.New(lab.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := net.JoinHostPort(m.IP, "22")
	conn, err := lab.Dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", host, err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:            user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         10 * time.Second,
	})
	if err != nil {
		_ = conn.Close()
		t.Fatalf("ssh %s@%s: %v", user, host, err)
	}
	client := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// sshRun runs a command over a new session and returns stdout, stderr.
func sshRun(t *testing.T, c *ssh.Client, cmd string) (string, string, error) {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	err = s.Run(cmd)
	return strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()), err
}

func mustSSH(t *testing.T, c *ssh.Client, cmd string) string {
	t.Helper()
	out, stderr, err := sshRun(t, c, cmd)
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, stderr)
	}
	return out
}

func canConnect(lab *testbed.Lab, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := lab.Dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// TestLab brings up one small lab with a registry and checks what tests of
// layercast rely on, host by host.
func TestLab(t *testing.T) {
	// reno: built into every kernel, and no machine's default, so the
	// lab's own setting is what the check below sees.
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3, Registry: true, Rate: "100mbit", CongestionControl: "reno"})
	hosts := lab.Hosts()
	if !slices.Equal(hosts, []string{"h01", "h02", "h03"}) {
		t.Fatalf("hosts = %v", hosts)
	}

	t.Run("EveryMachineUsesTheLabsCongestionControl", func(t *testing.T) {
		for _, m := range append([]string{"bastion"}, hosts...) {
			out, err := lab.Exec(context.Background(), m, "cat", "/proc/sys/net/ipv4/tcp_congestion_control")
			if got := strings.TrimSpace(string(out)); err != nil || got != "reno" {
				t.Errorf("%s: congestion control %q (%v), want reno", m, got, err)
			}
		}
	})

	t.Run("InventoryListsEveryHost", func(t *testing.T) {
		for _, path := range []string{lab.InventoryPath(), lab.DeployInventoryPath()} {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var inv struct {
				KnownHosts string `yaml:"known_hosts"`
				Defaults   struct {
					User         string `yaml:"user"`
					IdentityFile string `yaml:"identity_file"`
					Become       bool   `yaml:"become"`
				} `yaml:"defaults"`
				Hosts []struct {
					Name    string `yaml:"name"`
					Address string `yaml:"address"`
				} `yaml:"hosts"`
				Groups map[string][]string `yaml:"groups"`
			}
			if err := yaml.Unmarshal(b, &inv); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if len(inv.Hosts) != 3 || inv.Hosts[1].Name != "h02" {
				t.Errorf("%s: hosts %+v", path, inv.Hosts)
			}
			if !slices.Equal(inv.Groups["even"], []string{"h02"}) || !slices.Equal(inv.Groups["odd"], []string{"h01", "h03"}) {
				t.Errorf("%s: groups %v", path, inv.Groups)
			}
			for _, rel := range []string{inv.KnownHosts, inv.Defaults.IdentityFile} {
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), rel)); err != nil {
					t.Errorf("%s: %v", path, err)
				}
			}
			wantUser, wantBecome := "root", false
			if path == lab.DeployInventoryPath() {
				wantUser, wantBecome = testbed.DeployUser, true
			}
			if inv.Defaults.User != wantUser || inv.Defaults.Become != wantBecome {
				t.Errorf("%s: user %q become %v", path, inv.Defaults.User, inv.Defaults.Become)
			}
		}
	})

	t.Run("SSHWithStrictHostKeysReachesOwnDaemons", func(t *testing.T) {
		ids := map[string]string{}
		for _, h := range hosts {
			c := sshClient(t, lab, h, "root")
			if got := mustSSH(t, c, "hostname"); got != h {
				t.Errorf("hostname on %s = %q", h, got)
			}
			id := mustSSH(t, c, "docker info --format '{{.ID}}'")
			if other, dup := ids[id]; dup || id == "" {
				t.Errorf("%s and %s report the same daemon ID %q", h, other, id)
			}
			ids[id] = h
		}
	})

	t.Run("EachHostHasItsOwnTmp", func(t *testing.T) {
		mark := fmt.Sprintf("lab-mark-%d", time.Now().UnixNano())
		mustSSH(t, sshClient(t, lab, "h01", "root"), "touch /tmp/"+mark)
		if out := mustSSH(t, sshClient(t, lab, "h02", "root"), "ls /tmp"); strings.Contains(out, mark) {
			t.Errorf("h02 sees h01's /tmp: %s", out)
		}
		if _, err := os.Stat("/tmp/" + mark); err == nil {
			t.Errorf("the machine's /tmp holds h01's file")
		}
	})

	t.Run("DeployUsesDockerOnlyThroughSudo", func(t *testing.T) {
		for _, h := range hosts {
			c := sshClient(t, lab, h, testbed.DeployUser)
			if got := mustSSH(t, c, "id -un"); got != testbed.DeployUser {
				t.Errorf("%s: logged in as %q", h, got)
			}
			if _, stderr, err := sshRun(t, c, "docker info"); err == nil {
				t.Errorf("%s: deploy ran docker info without sudo", h)
			} else if !strings.Contains(stderr, "permission denied") {
				t.Errorf("%s: docker info without sudo: %s", h, stderr)
			}
			mustSSH(t, c, "sudo -n docker info --format '{{.ID}}'")
		}
	})

	var img *testbed.Image
	t.Run("ImageLoadsRunsAndPullsEverywhere", func(t *testing.T) {
		ctx := context.Background()
		var err error
		img, err = lab.MakeImage(ctx, testbed.ImageSpec{Tag: "lab/app:v1", Size: 12 << 20, Layers: 3, BaseSize: 4 << 20})
		if err != nil {
			t.Fatal(err)
		}
		out, err := lab.Exec(ctx, "bastion", "docker", "run", "--rm", "--network", "none", "lab/app:v1")
		if err != nil || string(out) != testbed.HelloMessage {
			t.Fatalf("docker run on the bastion: %q, %v", out, err)
		}
		for _, h := range hosts {
			c := sshClient(t, lab, h, "root")
			mustSSH(t, c, "docker pull -q "+img.RegistryRef)
			id := mustSSH(t, c, "docker image inspect --format '{{.Id}}' "+img.RegistryRef)
			if id != img.ID {
				t.Errorf("%s pulled image %s, want %s", h, id, img.ID)
			}
		}
	})

	t.Run("PreloadPutsBaseLayersOnChosenHosts", func(t *testing.T) {
		if img == nil {
			t.Skip("no image")
		}
		ctx := context.Background()
		if _, err := lab.Exec(ctx, "h03", "docker", "rmi", img.RegistryRef); err != nil {
			t.Fatal(err)
		}
		if err := lab.Preload(ctx, "lab/app:v1", "h03"); err != nil {
			t.Fatal(err)
		}
		out, err := lab.Exec(ctx, "h03", "docker", "image", "inspect", "--format", "{{json .RootFS.Layers}}", img.Base.Tag)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("[%q]", img.DiffIDs[0])
		if strings.TrimSpace(string(out)) != want || img.Base.DiffIDs[0] != img.DiffIDs[0] {
			t.Errorf("h03 base layers %s, want %s", out, want)
		}
		if _, err := lab.Exec(ctx, "h02", "docker", "image", "inspect", img.Base.Tag); err == nil {
			t.Errorf("h02 got the base image too")
		}
	})

	t.Run("LinksAreShaped", func(t *testing.T) {
		// Only the ceiling is asserted: under load the machine may deliver
		// less, never more. BenchmarkLinkRate reports the figures.
		ctx := context.Background()
		for _, pair := range [][2]string{{"h01", "h02"}, {"bastion", "h01"}, {"registry", "h02"}} {
			bps, err := lab.MeasureRate(ctx, pair[0], pair[1], 500*time.Millisecond, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s -> %s: %.1f Mbit/s", pair[0], pair[1], bps/1e6)
			if bps > 110e6 || bps < 10e6 {
				t.Errorf("%s -> %s: %.1f Mbit/s on a 100mbit link", pair[0], pair[1], bps/1e6)
			}
		}
		if err := lab.SlowLink(ctx, "h02", 10); err != nil {
			t.Fatal(err)
		}
		bps, err := lab.MeasureRate(ctx, "h01", "h02", 500*time.Millisecond, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("h01 -> slowed h02: %.1f Mbit/s", bps/1e6)
		if bps > 11e6 {
			t.Errorf("slowed link carries %.1f Mbit/s, want at most 11", bps/1e6)
		}
		if bps, err = lab.MeasureRate(ctx, "h02", "h01", 500*time.Millisecond, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("slowed h02 -> h01: %.1f Mbit/s", bps/1e6)
		if bps > 11e6 {
			t.Errorf("slowed link sends %.1f Mbit/s, want at most 11", bps/1e6)
		}
		if err := lab.HealLink(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		// A machine's own queue never refuses its packets: the links are
		// shaped on the way, as at a switch port.
		for _, m := range []string{"h01", "h02", "bastion"} {
			out, err := lab.Exec(ctx, m, "tc", "-s", "qdisc", "show", "dev", "eth0")
			if err != nil {
				t.Fatalf("%s: tc: %v: %s", m, err, out)
			}
			if strings.Contains(string(out), "htb") || strings.Contains(string(out), "dropped") && !strings.Contains(string(out), "dropped 0,") {
				t.Errorf("%s: eth0 shapes or drops in the machine's own queue:\n%s", m, out)
			}
		}
	})

	t.Run("CutLinkStopsTrafficUntilHealed", func(t *testing.T) {
		ctx := context.Background()
		addr := "10.0.0.0:0"
		if m, err := lab.Machine("h01"); err == nil {
			addr = net.JoinHostPort(m.IP, "22")
		}
		if err := lab.CutLink(ctx, "h01"); err != nil {
			t.Fatal(err)
		}
		if err := canConnect(lab, addr, 2*time.Second); err == nil {
			t.Errorf("connected to h01 through a cut link")
		}
		if err := lab.HealLink(ctx, "h01"); err != nil {
			t.Fatal(err)
		}
		if err := canConnect(lab, addr, 10*time.Second); err != nil {
			t.Errorf("h01 after heal: %v", err)
		}
	})

	t.Run("FillDiskLeavesTmpNearlyFull", func(t *testing.T) {
		ctx := context.Background()
		if err := lab.FillDisk(ctx, "h02", 64<<10); err != nil {
			t.Fatal(err)
		}
		c := sshClient(t, lab, "h02", "root")
		if _, stderr, err := sshRun(t, c, "head -c 1000000 /dev/zero > /tmp/big"); err == nil || !strings.Contains(stderr, "No space left") {
			t.Errorf("writing 1 MB to a full /tmp: %v %s", err, stderr)
		}
		if err := lab.ClearDisk(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		mustSSH(t, c, "head -c 1000000 /dev/zero > /tmp/big && rm /tmp/big")
	})

	t.Run("StopAndStartDocker", func(t *testing.T) {
		ctx := context.Background()
		c := sshClient(t, lab, "h02", "root")
		before := mustSSH(t, c, "docker info --format '{{.ID}}'")
		if err := lab.StopDocker(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sshRun(t, c, "docker info"); err == nil {
			t.Errorf("docker info works with dockerd stopped")
		}
		if err := lab.StartDocker(ctx, "h02"); err != nil {
			t.Fatal(err)
		}
		if after := mustSSH(t, c, "docker info --format '{{.ID}}'"); after != before {
			t.Errorf("daemon ID changed across restart: %s -> %s", before, after)
		}
	})

	t.Run("StopSSHDRefusesNewLogins", func(t *testing.T) {
		ctx := context.Background()
		m, _ := lab.Machine("h01")
		addr := net.JoinHostPort(m.IP, "22")
		if err := lab.StopSSHD(ctx, "h01"); err != nil {
			t.Fatal(err)
		}
		if err := canConnect(lab, addr, 2*time.Second); err == nil {
			t.Errorf("h01 accepts connections with sshd stopped")
		}
		if err := lab.StartSSHD(ctx, "h01"); err != nil {
			t.Fatal(err)
		}
		mustSSH(t, sshClient(t, lab, "h01", "root"), "true")
	})

	t.Run("KillHostLeavesNoProcess", func(t *testing.T) {
		ctx := context.Background()
		c := sshClient(t, lab, "h03", "root")
		mustSSH(t, c, "nohup sleep 300 >/dev/null 2>&1 &")
		if err := lab.KillHost(ctx, "h03"); err != nil {
			t.Fatal(err)
		}
		after, err := lab.Status()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range after {
			switch {
			case s.Name == "h03" && (s.Procs != 0 || s.Docker || s.SSHD):
				t.Errorf("h03 after kill: %+v", s)
			case s.Role == testbed.RoleHost && s.Name != "h03" && !(s.Docker && s.SSHD):
				t.Errorf("%s hit by killing h03: %+v", s.Name, s)
			}
		}
	})
}

// labResources lists what a lab made on the machine, as the commands an
// operator would use see it.
func labResources(t *testing.T, lab *testbed.Lab) (netns, links, mounts []string, procs []testbed.Proc) {
	t.Helper()
	out, err := runOut("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := lab.Machine("bastion")
	prefix := strings.TrimSuffix(ms.Netns, "bastion")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			netns = append(netns, f[0])
		}
	}
	out, err = runOut("ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], prefix) {
			links = append(links, strings.TrimSuffix(f[1], ":"))
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, "/"+lab.Name()+"/") || strings.Contains(l, lab.Dir()) || strings.Contains(l, prefix) {
			mounts = append(mounts, l)
		}
	}
	names := append([]string{"bastion", "registry"}, lab.Hosts()...)
	for _, n := range names {
		m, err := lab.Machine(n)
		if err != nil {
			continue
		}
		for _, p := range []testbed.Proc{m.Docker, m.Containerd, m.SSHD, m.Registry} {
			if p.Alive() {
				procs = append(procs, p)
			}
		}
	}
	return netns, links, mounts, procs
}

func runOut(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.Output()
	return string(out), err
}

// TestDown_LeavesNothing brings up two labs side by side, checks they do
// not share names or addresses, and takes both down twice.
func TestDown_LeavesNothing(t *testing.T) {
	testbed.RequireRoot(t)
	ctx := context.Background()
	type upped struct {
		lab *testbed.Lab
		err error
	}
	results := make(chan upped, 2)
	for i := range 2 {
		dir := filepath.Join(t.TempDir(), "lab")
		go func() {
			lab, err := testbed.Up(ctx, testbed.Config{
				Name: fmt.Sprintf("t-down-%d-%d", i, os.Getpid()%10000), Hosts: 1, Registry: i == 0,
				Dir: dir,
			})
			results <- upped{lab, err}
		}()
	}
	var labs []*testbed.Lab
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		labs = append(labs, r.lab)
		t.Cleanup(func() { _ = r.lab.Down(context.Background()) })
	}
	if len(labs) != 2 {
		t.FailNow()
	}
	a, _ := labs[0].Machine("h01")
	b, _ := labs[1].Machine("h01")
	if a.IP == b.IP || a.Netns == b.Netns || a.Veth == b.Veth {
		t.Errorf("labs collide: %+v and %+v", a, b)
	}
	for _, lab := range labs {
		netns, links, mounts, procs := labResources(t, lab)
		if len(netns) == 0 || len(links) == 0 || len(mounts) == 0 || len(procs) == 0 {
			t.Fatalf("lab %s before down: netns %v links %v mounts %d procs %v", lab.Name(), netns, links, len(mounts), procs)
		}
		m, _ := lab.Machine("h01")
		if err := lab.Down(ctx); err != nil {
			t.Fatal(err)
		}
		netns2, links2, mounts2, _ := labResources(t, lab)
		if len(netns2)+len(links2)+len(mounts2) > 0 {
			t.Errorf("lab %s left netns %v links %v mounts %v", lab.Name(), netns2, links2, mounts2)
		}
		for _, p := range procs {
			if p.Alive() {
				t.Errorf("lab %s left process %d", lab.Name(), p.Pid)
			}
		}
		for _, p := range []string{lab.Dir(), m.MountNS, filepath.Join(testbed.StateRoot, lab.Name())} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("lab %s left %s", lab.Name(), p)
			}
		}
		if err := lab.Down(ctx); err != nil {
			t.Errorf("second down: %v", err)
		}
		if _, err := testbed.Open(lab.Name()); !errors.Is(err, testbed.ErrNoLab) {
			t.Errorf("Open after down: %v", err)
		}
	}
}

// TestLab_ContainerdHosts brings up a lab whose last host runs containerd
// only, as a Kubernetes node does, and checks what a job there relies on.
func TestLab_ContainerdHosts(t *testing.T) {
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 2, Containerd: 1, Registry: true})
	ctx := context.Background()
	for h, want := range map[string]string{"h01": testbed.RuntimeDocker, "h02": testbed.RuntimeContainerd} {
		if got, err := lab.Runtime(h); err != nil || got != want {
			t.Errorf("runtime of %s: %q, %v; want %q", h, got, err, want)
		}
	}

	// Over SSH, as the bastion sees it: containerd at its default socket,
	// no Docker daemon, the lab registry trusted.
	c := sshClient(t, lab, "h02", "root")
	if out := mustSSH(t, c, "ctr version"); !strings.Contains(out, "Server:") || !strings.Contains(out, "Version:") {
		t.Errorf("ctr version on h02:\n%s", out)
	}
	mustSSH(t, c, "test -S "+testbed.ContainerdSocketInHost)
	if out, _, err := sshRun(t, c, "ls -l /run/docker.sock /var/run/docker.sock; command -v dockerd >/dev/null && docker info"); err == nil {
		t.Errorf("h02 has a Docker daemon:\n%s", out)
	}
	if out := mustSSH(t, c, "cat /etc/containerd/certs.d/"+lab.RegistryAddr()+"/hosts.toml"); !strings.Contains(out, "http://"+lab.RegistryAddr()) {
		t.Errorf("registry hosts file:\n%s", out)
	}
	d := sshClient(t, lab, "h01", "root")
	mustSSH(t, d, "docker info --format '{{.ServerVersion}}'")
	if _, _, err := sshRun(t, d, "test -e "+testbed.ContainerdSocketInHost); err == nil {
		t.Errorf("docker host h01 has %s", testbed.ContainerdSocketInHost)
	}

	// The inventory names the runtime as a label and a group.
	inv, err := os.ReadFile(lab.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(inv), "    runtime: containerd\n") || !strings.Contains(string(inv), "containerd: [h02]") {
		t.Errorf("inventory:\n%s", inv)
	}

	// Preloading a base imports it into the kubelet's namespace, unpacked.
	img, err := lab.MakeImage(ctx, testbed.ImageSpec{Tag: "lab/app:v1", Size: 2 << 20, Layers: 3, BaseSize: 1 << 20, BaseLayers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Preload(ctx, img.Spec.Tag, "h02"); err != nil {
		t.Fatal(err)
	}
	// The CRI plugin names each image by its ID too, as on a Kubernetes node.
	want := []string{"docker.io/" + img.Base.Tag, img.Base.ID}
	if out := strings.Fields(mustSSH(t, c, "ctr -n k8s.io images ls -q")); !slices.Equal(out, want) {
		t.Errorf("images on h02 after preload: %q, want %q", out, want)
	}
	if out := mustSSH(t, c, "ctr -n k8s.io snapshots ls | grep -c Committed"); out != "2" {
		t.Errorf("committed snapshots on h02: %s, want 2", out)
	}

	// runc runs a container there: the lab image prints its line.
	if err := lab.LoadImage(ctx, "h02", img.Path); err != nil {
		t.Fatal(err)
	}
	if out := mustSSH(t, c, "ctr -n k8s.io run --rm docker.io/"+img.Spec.Tag+" lab-run"); out != strings.TrimSpace(testbed.HelloMessage) {
		t.Errorf("ctr run printed %q", out)
	}
	mustSSH(t, c, "ctr -n k8s.io images rm docker.io/"+img.Spec.Tag+" "+img.ID)

	// From outside the lab, and across a restart.
	addr, err := lab.ContainerdAddress("h02")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runOut("ctr", "--address", addr, "version"); err != nil {
		t.Errorf("ctr --address %s version: %v: %s", addr, err, out)
	}
	if _, err := lab.ContainerdAddress("h01"); err == nil {
		t.Error("ContainerdAddress of a docker host")
	}
	if err := lab.StopContainerd(ctx, "h02"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sshRun(t, c, "ctr version"); err == nil {
		t.Error("ctr version answered with containerd stopped")
	}
	if err := lab.StartContainerd(ctx, "h02"); err != nil {
		t.Fatal(err)
	}
	if out := strings.Fields(mustSSH(t, c, "ctr -n k8s.io images ls -q")); !slices.Equal(out, want) {
		t.Errorf("images on h02 after a restart: %q, want %q", out, want)
	}

	// Down removes the containerd host with everything else.
	m, _ := lab.Machine("h02")
	if !m.Containerd.Alive() {
		t.Fatal("containerd of h02 not running")
	}
	if err := lab.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Containerd.Alive() {
		t.Errorf("containerd %d still running after down", m.Containerd.Pid)
	}
	netns, links, mounts, _ := labResources(t, lab)
	if len(netns)+len(links)+len(mounts) > 0 {
		t.Errorf("down left netns %v links %v mounts %v", netns, links, mounts)
	}
	if _, err := os.Stat(m.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("down left %s", m.Dir)
	}
}

// BenchmarkLinkRate reports what one TCP stream gets between two hosts on a
// 100mbit lab.
func BenchmarkLinkRate(b *testing.B) {
	lab := testbed.UpForTest(b, testbed.Config{Hosts: 2, Rate: "100mbit"})
	ctx := context.Background()
	var total float64
	for b.Loop() {
		bps, err := lab.MeasureRate(ctx, "h01", "h02", 500*time.Millisecond, 2*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		total += bps
	}
	b.ReportMetric(total/float64(b.N)/1e6, "Mbit/s")
}

// TestUp_TakesDownLabsOfExitedOwners runs this test binary again as a child
// that brings up an ephemeral lab and exits without taking it down, then
// checks that the next Up removes the orphan.
func TestUp_TakesDownLabsOfExitedOwners(t *testing.T) {
	const childEnv = "TESTBED_ORPHAN_CHILD_NAME"
	if name := os.Getenv(childEnv); name != "" {
		_, err := testbed.Up(context.Background(), testbed.Config{Name: name, Hosts: 1, Ephemeral: true, Dir: os.Getenv("TESTBED_ORPHAN_CHILD_DIR")})
		if err != nil {
			t.Fatal(err)
		}
		os.Exit(0) // leave the lab behind, as a killed test would
	}
	testbed.RequireRoot(t)
	orphan := fmt.Sprintf("t-orphan-%d", os.Getpid()%10000)
	dir := filepath.Join(t.TempDir(), "orphan")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestUp_TakesDownLabsOfExitedOwners$")
	child.Env = append(os.Environ(), childEnv+"="+orphan, "TESTBED_ORPHAN_CHILD_DIR="+dir)
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	left, err := testbed.Open(orphan)
	if err != nil {
		t.Fatalf("the child left no lab: %v", err)
	}
	t.Cleanup(func() { _ = left.Down(context.Background()) })
	m, _ := left.Machine("h01")

	testbed.UpForTest(t, testbed.Config{Hosts: 1})
	if _, err := testbed.Open(orphan); !errors.Is(err, testbed.ErrNoLab) {
		t.Errorf("orphaned lab still recorded: %v", err)
	}
	// The new lab may reuse the orphan's slot and so its names; its files
	// are its own.
	if _, err := os.Stat(m.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphaned lab's files still there: %v", err)
	}
	if m.Docker.Alive() || m.SSHD.Alive() {
		t.Errorf("orphaned lab's daemons still run")
	}
}

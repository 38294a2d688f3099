package e2e

// Operator habits (issue 7) on the lab: plan before moving, Ansible
// inventories, output for CI, release and `go install` builds.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// cliResult is one finished layercast command run on the bastion.
type cliResult struct {
	stdout, stderr []byte
	code           int
}

// runCLI runs bin with args on the lab's bastion, with env added to the
// environment, and waits at most limit.
func runCLI(t testing.TB, lab *testbed.Lab, limit time.Duration, env []string, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd, err := lab.Command(ctx, "bastion", append([]string{bin}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := cliResult{stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s %s did not finish within %s; stderr:\n%s", filepath.Base(bin), args[0], limit, stderr.String())
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", bin, err)
	}
	return res
}

// planOf runs `layercast plan --json` (or `run --dry-run --json`) and
// parses the plan.
func planOf(t testing.TB, lab *testbed.Lab, env []string, args ...string) *orchestrator.Plan {
	t.Helper()
	res := runCLI(t, lab, 3*time.Minute, env, binary(t), args...)
	if res.code != 0 {
		t.Fatalf("%s: exit %d; stdout:\n%s\nstderr:\n%s", args[0], res.code, res.stdout, res.stderr)
	}
	var p orchestrator.Plan
	if err := json.Unmarshal(res.stdout, &p); err != nil {
		t.Fatalf("%s --json printed no plan: %v\n%s", args[0], err, res.stdout)
	}
	return &p
}

// hostTraces is what a job could leave on a host: everything under /tmp
// and the images of its daemon.
func hostTraces(t testing.TB, lab *testbed.Lab, host string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), host, "sh", "-c",
		`echo "tmp:"; find /tmp -mindepth 1 2>/dev/null | sort; echo "images:"; docker images -q --no-trunc | sort`)
	if err != nil {
		t.Fatalf("look at %s: %v", host, err)
	}
	return string(out)
}

// jobDirs lists the job directories on a host (any job).
func jobDirs(t testing.TB, lab *testbed.Lab, host string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), host, "sh", "-c", "ls -d /tmp/layercast-* 2>/dev/null || true")
	if err != nil {
		t.Fatalf("look at %s: %v", host, err)
	}
	return strings.TrimSpace(string(out))
}

// TestPlan_PerHostBytesMatchWhatTheRunMoves is issue 7's "plan on the
// testbed": 8 hosts at 100 mbit, 4 of them hold the base layers. The plan
// writes nothing on any host, and each host's Needs matches what the run
// then brought it (from peers and bastion) within 5%.
func TestPlan_PerHostBytesMatchWhatTheRunMoves(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 8, Rate: "100mbit"})
	makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v3", Size: 200 * mb, Layers: 5, BaseSize: 100 * mb, BaseLayers: 2})
	withBase := map[string]bool{"h01": true, "h02": true, "h03": true, "h04": true}
	if err := lab.Preload(context.Background(), "lab/app:v3", "h01", "h02", "h03", "h04"); err != nil {
		t.Fatal(err)
	}
	cache := []string{"--cache-dir", filepath.Join(lab.Dir(), "cache")}

	before := map[string]string{}
	for _, h := range lab.Hosts() {
		before[h] = hostTraces(t, lab, h)
	}
	p := planOf(t, lab, nil, append([]string{"plan", "--json", "-i", lab.InventoryPath()}, append(cache, "lab/app:v3")...)...)
	for _, h := range lab.Hosts() {
		if after := hostTraces(t, lab, h); after != before[h] {
			t.Errorf("%s changed during plan:\nbefore:\n%s\nafter:\n%s", h, before[h], after)
		}
		if dirs := jobDirs(t, lab, h); dirs != "" {
			t.Errorf("%s: plan left %s", h, dirs)
		}
	}
	dry := planOf(t, lab, nil, append([]string{"run", "--dry-run", "--json", "-i", lab.InventoryPath()}, append(cache, "lab/app:v3")...)...)

	if len(p.Hosts) != 8 || p.Layers != 5 || p.UpToDate != 0 {
		t.Fatalf("plan: %d hosts, %d layers, %d up to date; want 8, 5, 0", len(p.Hosts), p.Layers, p.UpToDate)
	}
	planned := map[string]orchestrator.HostPlan{}
	var sum int64
	for _, h := range p.Hosts {
		planned[h.Host] = h
		sum += h.Needs
		wantPresent := 0
		if withBase[h.Host] {
			wantPresent = 2
		}
		if !h.Reachable || h.Arch != "amd64" || h.Docker != "direct" || h.LayersPresent != wantPresent || h.Error != "" {
			t.Errorf("plan for %s: %+v; want reachable amd64 direct with %d layers present", h.Host, h, wantPresent)
		}
	}
	if sum != p.Bytes {
		t.Errorf("plan total %d bytes, hosts add up to %d", p.Bytes, sum)
	}
	for _, h := range dry.Hosts {
		if h.Needs != planned[h.Host].Needs || h.LayersPresent != planned[h.Host].LayersPresent {
			t.Errorf("run --dry-run for %s: %+v, plan said %+v", h.Host, h, planned[h.Host])
		}
	}

	rep, code, j := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v3")
	if code != 0 {
		t.Fatalf("run: exit %d; stderr:\n%s", code, j.stderr.String())
	}
	res := hostResults(rep)
	var rows []string
	var maxDev float64
	for _, h := range lab.Hosts() {
		pl, r := planned[h], res[h]
		moved := r.FromPeers + r.FromSeeder
		dev := math.Abs(float64(moved-pl.Needs)) / float64(pl.Needs)
		maxDev = math.Max(maxDev, dev)
		rows = append(rows, fmt.Sprintf("%s  base=%-5t  plan needs %7.2f MB  run moved %7.2f MB (peers %6.2f, bastion %6.2f)  %+.2f%% (%+d bytes)  skipped %d",
			h, withBase[h], float64(pl.Needs)/mb, float64(moved)/mb, float64(r.FromPeers)/mb, float64(r.FromSeeder)/mb, 100*float64(moved-pl.Needs)/float64(pl.Needs), moved-pl.Needs, r.LayersSkipped))
		if r.State != orchestrator.HostDone {
			t.Errorf("%s: %s %s", h, r.State, r.Error)
		}
		if dev > 0.05 {
			t.Errorf("%s: plan said %d bytes, the run moved %d (%.1f%% off, want within 5%%)", h, pl.Needs, moved, 100*dev)
		}
		if r.LayersSkipped != pl.LayersPresent {
			t.Errorf("%s: run skipped %d layers, plan said %d present", h, r.LayersSkipped, pl.LayersPresent)
		}
	}
	for h := range withBase {
		for _, o := range []string{"h05", "h06", "h07", "h08"} {
			if planned[h].Needs >= planned[o].Needs {
				t.Errorf("%s holds the base yet needs %d bytes, %s without it %d", h, planned[h].Needs, o, planned[o].Needs)
			}
		}
	}
	t.Logf("plan total %.2f MB; run %s, bastion sent %.2f MB; largest deviation %.2f%%\n%s",
		float64(p.Bytes)/mb, rep.Duration.Round(100*time.Millisecond), float64(rep.Egress)/mb, 100*maxDev, strings.Join(rows, "\n"))
	assertNothingLeft(t, lab, rep)

	// Planned again, every host is up to date and needs nothing.
	again := planOf(t, lab, nil, append([]string{"plan", "--json", "-i", lab.InventoryPath()}, append(cache, "lab/app:v3")...)...)
	if again.UpToDate != 8 || again.Bytes != 0 {
		t.Errorf("plan after the run: %d up to date, %d bytes; want 8 and 0", again.UpToDate, again.Bytes)
	}
}

// labAnsibleINI describes the lab as an Ansible INI inventory: groups with
// children, group vars for the deploy user (sudo for docker), one host that
// overrides them to log in as root, and variables layercast ignores.
func labAnsibleINI(t testing.TB, lab *testbed.Lab) string {
	t.Helper()
	ip := func(h string) string {
		m, err := lab.Machine(h)
		if err != nil {
			t.Fatal(err)
		}
		return m.IP
	}
	return fmt.Sprintf(`# The lab as an Ansible inventory.
[web]
h01 ansible_host=%s
h02 ansible_host=%s

[db]
h03 ansible_host=%s
h04 ansible_host=%s ansible_user=root ansible_become=false

[fleet:children]
web
db

[fleet:vars]
ansible_user=%s
ansible_port=22
ansible_become=true
ansible_become_method=sudo
ansible_ssh_private_key_file=%s
ansible_python_interpreter=/usr/bin/python3
`, ip("h01"), ip("h02"), ip("h03"), ip("h04"), testbed.DeployUser, lab.IdentityPath())
}

// TestAnsibleINIInventory_DrivesARun: an Ansible INI inventory of the lab
// runs a job to every host of a group made of children, through sudo for
// the deploy user and directly for root. Ansible inventories have no
// known_hosts field: layercast reads ~/.ssh/known_hosts, so HOME points at
// one holding the lab's keys. The job runs in plain mode with stdout a pipe
// (as in CI): no cursor control on stdout or stderr.
func TestAnsibleINIInventory_DrivesARun(t *testing.T) {
	bin := labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 4})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/ansible:v1", Size: 40 * mb, Layers: 3})

	dir := t.TempDir()
	inv := filepath.Join(dir, "hosts.ini")
	if err := os.WriteFile(inv, []byte(labAnsibleINI(t, lab)), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	kh, err := os.ReadFile(lab.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), kh, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + home, "SSH_AUTH_SOCK="}
	common := []string{"-i", inv, "--cache-dir", filepath.Join(lab.Dir(), "cache")}

	p := planOf(t, lab, env, append(append([]string{"plan", "--json", "--group", "fleet"}, common...), "lab/ansible:v1")...)
	wantDocker := map[string]string{"h01": "sudo", "h02": "sudo", "h03": "sudo", "h04": "direct"}
	for _, h := range p.Hosts {
		if h.Docker != wantDocker[h.Host] || !h.Reachable {
			t.Errorf("plan for %s: %+v, want docker %s", h.Host, h, wantDocker[h.Host])
		}
	}
	if len(p.Hosts) != 4 {
		t.Errorf("group fleet (web + db) planned %d hosts, want 4", len(p.Hosts))
	}

	report, summary := filepath.Join(dir, "report.json"), filepath.Join(dir, "summary.md")
	args := append(append([]string{"run", "--group", "fleet"}, common...), "--report", report, "--summary", summary, "--progress-interval", "500ms", "--timeout", "4m", "lab/ansible:v1")
	res := runCLI(t, lab, 5*time.Minute, env, bin, args...)
	t.Logf("layercast run -i hosts.ini (plain):\n%s", res.stdout)
	if res.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
	}
	for name, out := range map[string][]byte{"stdout": res.stdout, "stderr": res.stderr} {
		if i := bytes.IndexByte(out, 0x1b); i >= 0 {
			t.Errorf("%s holds ESC at byte %d: %q", name, i, out[i:min(len(out), i+16)])
		}
		if bytes.ContainsRune(out, '\r') {
			t.Errorf("%s holds a carriage return", name)
		}
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep orchestrator.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var hosts []string
	for _, h := range rep.Hosts {
		hosts = append(hosts, h.Host)
		if h.State != orchestrator.HostDone {
			t.Errorf("%s: %s %s", h.Host, h.State, h.Error)
		}
		if id := imageOn(t, lab, h.Host, "lab/ansible:v1"); id != img.ID {
			t.Errorf("%s: image %q, want %s", h.Host, id, img.ID)
		}
	}
	sort.Strings(hosts)
	if strings.Join(hosts, ",") != "h01,h02,h03,h04" {
		t.Errorf("report covers %v, want h01..h04", hosts)
	}
	md, err := os.ReadFile(summary)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if !strings.Contains(string(md), "| "+h+" | done |") {
			t.Errorf("summary lacks a done row for %s:\n%s", h, md)
		}
	}
	assertNothingLeft(t, lab, &rep)

	// Without the known_hosts the hosts' keys are unknown and the job stops
	// before uploading anything: the inventory's form changes nothing there.
	removeImages(t, lab, "lab/ansible:v1")
	emptyHome := filepath.Join(dir, "empty-home")
	if err := os.MkdirAll(emptyHome, 0o700); err != nil {
		t.Fatal(err)
	}
	res = runCLI(t, lab, 3*time.Minute, []string{"HOME=" + emptyHome, "SSH_AUTH_SOCK="}, bin, append(append([]string{"run"}, common...), "--hosts", "h01", "--report", report, "lab/ansible:v1")...)
	if res.code != 1 || !strings.Contains(string(res.stdout), "host key") {
		t.Errorf("unknown host keys: exit %d, want 1 naming the host key; stdout:\n%s", res.code, res.stdout)
	}
	if dirs := jobDirs(t, lab, "h01"); dirs != "" {
		t.Errorf("h01 got files although its key was unknown: %s", dirs)
	}
}

// TestGoInstallBuild_BuildsNodeBinariesOnFirstUse: a layercast built
// without the embedded node binaries (as `go install` builds it) runs a job
// on the lab; it compiles the node binary with the local Go toolchain into
// its cache dir first.
func TestGoInstallBuild_BuildsNodeBinariesOnFirstUse(t *testing.T) {
	labTest(t)
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command")
	}
	root := moduleRoot(t, goTool)
	assets := filepath.Join(root, "orchestrator", "nodeassets", "bin")
	dir := t.TempDir()
	overlay := map[string]map[string]string{"Replace": {}}
	for _, arch := range []string{"amd64", "arm64"} {
		for _, suffix := range []string{".gz", ".version"} {
			overlay["Replace"][filepath.Join(assets, "layercast-node-linux-"+arch+suffix)] = ""
		}
	}
	ob, _ := json.Marshal(overlay)
	if err := os.WriteFile(filepath.Join(dir, "overlay.json"), ob, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "layercast")
	build := exec.Command(goTool, "build", "-overlay", filepath.Join(dir, "overlay.json"), "-o", bin, "./cmd/layercast")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOPROXY=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build layercast without node binaries: %v\n%s", err, out)
	}

	lab := testbed.UpForTest(t, testbed.Config{Hosts: 2})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/goinstall:v1", Size: 20 * mb, Layers: 2})
	gocache, err := exec.Command(goTool, "env", "GOCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	cacheHome := filepath.Join(dir, "xdg-cache")
	// XDG_CACHE_HOME moves layercast's cache; GOCACHE stays where it is so
	// the build reuses compiled packages. GOPROXY=off: no network.
	env := []string{"XDG_CACHE_HOME=" + cacheHome, "GOCACHE=" + strings.TrimSpace(string(gocache)), "GOPROXY=off", "GOFLAGS="}

	v := runCLI(t, lab, time.Minute, env, bin, "version")
	if !strings.Contains(string(v.stdout), "node binary linux/amd64: not built in; built on first use") {
		t.Fatalf("the build still carries node binaries:\n%s", v.stdout)
	}
	start := time.Now()
	res := runCLI(t, lab, 8*time.Minute, env, bin, "run", "-i", lab.InventoryPath(), "--cache-dir", filepath.Join(lab.Dir(), "cache"), "lab/goinstall:v1")
	t.Logf("go-install build, first job (node binary compiled on the way) in %s:\n%s", time.Since(start).Round(time.Second), res.stdout)
	if res.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
	}
	for _, h := range lab.Hosts() {
		if id := imageOn(t, lab, h, "lab/goinstall:v1"); id != img.ID {
			t.Errorf("%s: image %q, want %s", h, id, img.ID)
		}
	}
	built := filepath.Join(cacheHome, "layercast", "node-binaries", "source", "layercast-node-linux-amd64.gz")
	if _, err := os.Stat(built); err != nil {
		t.Errorf("node binary not in the cache dir: %v", err)
	}
}

func moduleRoot(t testing.TB, goTool string) string {
	t.Helper()
	out, err := exec.Command(goTool, "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("find the module root: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// TestRelease_BinaryRunsAJob runs a job on the lab with a binary from
// `make release` (LAYERCAST_RELEASE_BIN; `make release-lab` sets it).
func TestRelease_BinaryRunsAJob(t *testing.T) {
	labTest(t)
	bin := os.Getenv("LAYERCAST_RELEASE_BIN")
	if bin == "" {
		t.Skip("LAYERCAST_RELEASE_BIN is not set; `make release-lab` builds dist/ and sets it")
	}
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 4, Rate: "100mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/release:v1", Size: 100 * mb, Layers: 3})
	v := runCLI(t, lab, time.Minute, nil, bin, "version")
	t.Logf("%s version:\n%s", bin, v.stdout)
	for _, arch := range []string{"amd64", "arm64"} {
		if !strings.Contains(string(v.stdout), "node binary linux/"+arch+": ") || strings.Contains(string(v.stdout), "not built in") {
			t.Errorf("release binary does not carry the linux/%s node binary:\n%s", arch, v.stdout)
		}
	}
	res := runCLI(t, lab, 5*time.Minute, nil, bin, "run", "-i", lab.InventoryPath(), "--cache-dir", filepath.Join(lab.Dir(), "cache"), "lab/release:v1")
	t.Logf("%s run:\n%s", bin, res.stdout)
	if res.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", res.code, res.stderr)
	}
	for _, h := range lab.Hosts() {
		if id := imageOn(t, lab, h, "lab/release:v1"); id != img.ID {
			t.Errorf("%s: image %q, want %s", h, id, img.ID)
		}
	}
}

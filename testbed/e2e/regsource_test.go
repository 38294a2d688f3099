package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/registrysource/registrytest"
	"github.com/layercast/layercast/testbed"
)

// labRegistryUser is the account of the registry-source tests' lab
// registry (htpasswd basic auth); each test picks its own password.
const labRegistryUser = "lcuser"

// dockerConfig writes a Docker config holding what the bastion's
// layercast should know of the lab registry and returns its dir, for
// DOCKER_CONFIG.
func dockerConfig(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// authConfig is a Docker config with basic credentials for the lab
// registry under auths.
func authConfig(t *testing.T, lab *testbed.Lab, user, password string) string {
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	return dockerConfig(t, fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, lab.RegistryAddr(), basic))
}

// pushTo writes an image or an index to the lab registry from outside the
// lab, as the registry's account, and returns its reference.
func pushTo(t *testing.T, lab *testbed.Lab, repoTag string, img v1.Image, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(lab.RegistryAddr() + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	user, password := lab.RegistryAuth()
	opts := []remote.Option{remote.WithContext(t.Context()), remote.WithTransport(lab.RegistryTransport())}
	if user != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: user, Password: password}))
	}
	if idx != nil {
		err = remote.WriteIndex(ref, idx, opts...)
	} else {
		err = remote.Write(ref, img, opts...)
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref.String()
}

// secretWatch scans every process's arguments on this machine (lab hosts
// and the bastion share its pid namespace) for the needles until stopped.
type secretWatch struct {
	stop  chan struct{}
	done  chan struct{}
	scans int
	leaks []string
}

func watchArgs(needles ...string) *secretWatch {
	w := &secretWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			w.scans++
			w.leaks = append(w.leaks, argsHolding(needles)...)
		}
	}()
	return w
}

func (w *secretWatch) end() (int, []string) {
	close(w.stop)
	<-w.done
	return w.scans, w.leaks
}

// assertSecretsOffHosts fails when a needle is in a file of a host.
func assertSecretsOffHosts(t *testing.T, lab *testbed.Lab, hosts []string, needles ...string) {
	t.Helper()
	for _, h := range hosts {
		m, _ := lab.Machine(h)
		for _, d := range []string{"tmp", "root", "home", "etc-docker", "var-tmp"} {
			if f := filesHolding(t, filepath.Join(m.Dir, d), needles); len(f) > 0 {
				t.Errorf("%s: credentials on disk in %v", h, f)
			}
		}
	}
}

// TestRegistrySource: jobs straight from a private registry (basic auth)
// with the bastion's Docker daemon stopped.
func TestRegistrySource(t *testing.T) {
	labTest(t)
	password := "Lc-" + randomToken()[:20]
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 6, Rate: "100mbit", Registry: true, RegistryUser: labRegistryUser, RegistryPassword: password})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/regsrc:v1", Size: 40 * mb, Layers: 3})
	basic := base64.StdEncoding.EncodeToString([]byte(labRegistryUser + ":" + password))
	needles := []string{password, basic}
	ctx := context.Background()
	var table []string

	// Images the bad-input cases need, pushed before the daemon stops.
	armOnly := pushTo(t, lab, "lab/armonly:v1", registrytest.Image(t, "linux/arm64", false,
		registrytest.GzipLayer(t, registrytest.LayerTar(41, 100_000))), nil)
	zstd := pushTo(t, lab, "lab/zstd:v1", registrytest.Image(t, "linux/amd64", true,
		registrytest.RawLayer(registrytest.LayerTar(42, 100_000), types.OCILayerZStd)), nil)

	if err := lab.StopDocker(ctx, "bastion"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.StartDocker(context.Background(), "bastion"); err != nil {
			t.Error(err)
		}
	})

	t.Run("daemon stopped, credentials from the docker config", func(t *testing.T) {
		env := []string{"DOCKER_CONFIG=" + authConfig(t, lab, labRegistryUser, password)}
		hosts := []string{"h01", "h02", "h03"}
		w := watchArgs(needles...)
		j := startJobEnv(t, lab, env, "-i", lab.InventoryPath(), "--hosts", strings.Join(hosts, ","), img.RegistryRef)
		rep, code := j.wait(t, 5*time.Minute)
		scans, leaks := w.end()
		if rep == nil || code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
		}
		info := j.info(t)
		if info.Source != "registry" {
			t.Errorf("source %q, want registry (the bastion's daemon is stopped)", info.Source)
		}
		var unpacked int64
		for _, l := range info.Layers {
			if l.MediaType != "tar+gzip" {
				t.Errorf("layer %s travels as %q, want the registry's gzip blob", l.Digest, l.MediaType)
			}
			unpacked += l.Unpacked
		}
		for _, h := range hosts {
			if got := imageOn(t, lab, h, img.RegistryRef); got != img.ID {
				t.Errorf("%s: %s is %q, want the registry's %s", h, img.RegistryRef, got, img.ID)
			}
		}
		t.Logf("registry source, no daemon: %d hosts in %s; layer files %.1f MB for %.1f MB of tars; bastion egress %.1f MB; process arguments scanned %d times",
			len(hosts), rep.Duration.Round(100*time.Millisecond), float64(info.Size)/mb, float64(unpacked)/mb, float64(rep.Egress)/mb, scans)
		if len(leaks) > 0 {
			t.Errorf("credentials in process arguments: %v", leaks)
		}
		assertSecretsOffHosts(t, lab, lab.Hosts(), needles...)
		assertNothingLeft(t, lab, rep)
	})

	t.Run("credentials from a credential helper", func(t *testing.T) {
		helpers := t.TempDir()
		script := fmt.Sprintf("#!/bin/sh\nread server\n[ \"$1\" = get ] || exit 1\nprintf '{\"ServerURL\":\"%%s\",\"Username\":\"%s\",\"Secret\":\"%s\"}\\n' \"$server\"\n", labRegistryUser, password)
		if err := os.WriteFile(filepath.Join(helpers, "docker-credential-lclab"), []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := dockerConfig(t, fmt.Sprintf(`{"credHelpers": {%q: "lclab"}}`, lab.RegistryAddr()))
		env := []string{"DOCKER_CONFIG=" + cfg, "PATH=" + helpers + ":" + os.Getenv("PATH")}
		hosts := []string{"h04", "h05"}
		w := watchArgs(needles...)
		j := startJobEnv(t, lab, env, "-i", lab.InventoryPath(), "--hosts", strings.Join(hosts, ","), "--source", "registry", img.RegistryRef)
		rep, code := j.wait(t, 5*time.Minute)
		_, leaks := w.end()
		if rep == nil || code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
		}
		for _, h := range hosts {
			if got := imageOn(t, lab, h, img.RegistryRef); got != img.ID {
				t.Errorf("%s: %q, want %s", h, got, img.ID)
			}
		}
		if len(leaks) > 0 {
			t.Errorf("credentials in process arguments: %v", leaks)
		}
		assertSecretsOffHosts(t, lab, lab.Hosts(), needles...)
		t.Logf("credential helper: %d hosts done in %s", len(hosts), rep.Duration.Round(100*time.Millisecond))
	})

	t.Run("bad input exits 2 before any host is touched", func(t *testing.T) {
		good := authConfig(t, lab, labRegistryUser, password)
		logins := sshLogins(t, lab)
		for _, c := range []struct {
			name, image, config string
			args                []string
			want                string
		}{
			{"unknown repository", lab.RegistryAddr() + "/lab/nosuch:v1", good, nil, "has no repository lab/nosuch"},
			{"unknown tag", strings.Replace(img.RegistryRef, ":v1", ":v9", 1), good, nil, "has no tag v9"},
			{"denied credentials", img.RegistryRef, authConfig(t, lab, labRegistryUser, "wrong"), nil, "refused the bastion's credentials"},
			{"no credentials", img.RegistryRef, dockerConfig(t, `{}`), nil, "wants credentials"},
			{"no platform the hosts have", armOnly, good, nil, "no image for linux/amd64"},
			{"unsupported media type", zstd, good, nil, "zstd"},
			{"--source daemon without a daemon", img.RegistryRef, good, []string{"--source", "daemon"}, "Docker daemon"},
		} {
			args := append([]string{"-i", lab.InventoryPath()}, c.args...)
			j := startJobEnv(t, lab, []string{"DOCKER_CONFIG=" + c.config}, append(args, c.image)...)
			_, code := j.wait(t, 3*time.Minute)
			msg := strings.TrimSpace(j.stderr.String())
			table = append(table, fmt.Sprintf("%s → exit %d: %s", c.name, code, msg))
			if code != 2 || strings.Count(msg, "\n") > 0 || !strings.Contains(msg, c.want) {
				t.Errorf("%s: exit %d, stderr %q; want exit 2 and one line saying %q", c.name, code, msg, c.want)
			}
			j.mu.Lock()
			if len(j.events) > 0 {
				t.Errorf("%s: %d events for a job that should not start", c.name, len(j.events))
			}
			j.mu.Unlock()
		}
		if got := sshLogins(t, lab); got != logins {
			t.Errorf("bad input: %d SSH logins on the hosts, want none", got-logins)
		}
	})
	t.Logf("bad input from a registry:\n%s", strings.Join(table, "\n"))
}

// TestRegistrySource_DedupAcrossSources: layers a host got from a
// daemon-source job (uncompressed files) are skipped, by chain ID, by a
// registry-source job (gzip blobs of other digests) of an image built on
// them.
func TestRegistrySource_DedupAcrossSources(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 2, Rate: "100mbit", Registry: true})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/dedup:v1", Size: 30 * mb, Layers: 3, BaseSize: 20 * mb, BaseLayers: 2})
	if err := lab.LoadImage(context.Background(), "bastion", img.BasePath); err != nil {
		t.Fatal(err)
	}
	env := []string{"DOCKER_CONFIG=" + dockerConfig(t, `{}`)}
	j := startJobEnv(t, lab, env, "-i", lab.InventoryPath(), "--source", "daemon", "--compress", "none", "lab/dedup-base:v1")
	rep, code := j.wait(t, 4*time.Minute)
	if rep == nil || code != 0 {
		t.Fatalf("daemon source: exit %d; stderr:\n%s", code, j.stderr.String())
	}
	j = startJobEnv(t, lab, env, "-i", lab.InventoryPath(), "--source", "registry", img.RegistryRef)
	rep, code = j.wait(t, 4*time.Minute)
	if rep == nil || code != 0 {
		t.Fatalf("registry source: exit %d; stderr:\n%s", code, j.stderr.String())
	}
	info := j.info(t)
	top := info.Layers[len(info.Layers)-1].Size
	for _, h := range rep.Hosts {
		got := h.FromPeers + h.FromSeeder
		t.Logf("%s: %s, %d of 3 layers skipped, %.1f MB received for a %.1f MB top layer", h.Host, h.State, h.LayersSkipped, float64(got)/mb, float64(top)/mb)
		if h.State != orchestrator.HostDone || h.LayersSkipped != 2 || float64(got) > 1.05*float64(top) {
			t.Errorf("%s: %+v; want done with the 2 base layers skipped", h.Host, h)
		}
		if got := imageOn(t, lab, h.Host, img.RegistryRef); got != img.ID {
			t.Errorf("%s: %q, want %s", h.Host, got, img.ID)
		}
	}
}

// fakeMachine makes uname -m (and -sm) on a host say machine (aarch64, armv7l), by
// mounting a script over uname inside the host's mount namespace (gone
// with the lab).
func fakeMachine(t *testing.T, lab *testbed.Lab, host, machine string) {
	t.Helper()
	m, _ := lab.Machine(host)
	script := filepath.Join(m.Dir, "root", "fake-uname")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncase \"$1\" in -m) echo "+machine+";; -sm) echo Linux "+machine+";; *) echo Linux;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(context.Background(), host, "mount", "--bind", "/root/fake-uname", "/usr/bin/uname"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = lab.Exec(context.Background(), host, "umount", "/usr/bin/uname") })
}

// amd64NodeForArm64 is a node binary dir whose arm64 binary is the amd64
// one: lab hosts that say aarch64 are amd64 machines and run it.
func amd64NodeForArm64(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "orchestrator", "nodeassets", "bin", nodeassets.FileName("amd64"))
	gz, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("the built node binary (make build): %v", err)
	}
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		if err := os.WriteFile(filepath.Join(dir, nodeassets.FileName(arch)), gz, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRegistrySource_MixedFleet: an index of linux/amd64 and linux/arm64
// images sharing a base layer; two hosts say aarch64. Each host gets its
// own platform's image; a host that says armv7l, which the index lacks,
// fails alone before any download.
func TestRegistrySource_MixedFleet(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 5, Rate: "100mbit", Registry: true})
	base := registrytest.GzipLayer(t, registrytest.LayerTar(51, 12_000_000))
	amd := registrytest.Image(t, "linux/amd64", false, base, registrytest.GzipLayer(t, registrytest.LayerTar(52, 6_000_000)))
	arm := registrytest.Image(t, "linux/arm64", true, base, registrytest.GzipLayer(t, registrytest.LayerTar(53, 7_000_000), types.OCILayer))
	ref := pushTo(t, lab, "lab/multi:v1", nil, registrytest.Index(t, amd, arm))
	ids := map[string]string{"amd64": registrytest.ConfigDigest(t, amd), "arm64": registrytest.ConfigDigest(t, arm)}
	fakeMachine(t, lab, "h03", "aarch64")
	fakeMachine(t, lab, "h04", "aarch64")
	fakeMachine(t, lab, "h05", "armv7l")
	inv := editInventory(t, lab, map[string]string{"h03": "    platform: linux/arm64\n", "h04": "    platform: linux/arm64\n"})
	env := []string{"DOCKER_CONFIG=" + dockerConfig(t, `{}`)}

	plan, err := lab.Command(context.Background(), "bastion", binary(t), "plan", "-i", inv, "--node-binary-dir", amd64NodeForArm64(t), ref)
	if err != nil {
		t.Fatal(err)
	}
	plan.Env = append(plan.Env, env...)
	out, _ := plan.CombinedOutput()
	t.Logf("plan:\n%s", out)
	for _, want := range []string{"linux/arm64", "linux/amd64", "has no image for linux/arm/v7"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plan does not show %q", want)
		}
	}

	j := startJobEnv(t, lab, env, "-i", inv, "--node-binary-dir", amd64NodeForArm64(t), ref)
	rep, code := j.wait(t, 5*time.Minute)
	if rep == nil {
		t.Fatalf("no report (exit %d); stderr:\n%s", code, j.stderr.String())
	}
	if code != 1 {
		t.Errorf("exit %d, want 1 (h05 fails)", code)
	}
	info := j.info(t)
	if len(info.Platforms) != 2 || len(info.Layers) != 3 {
		t.Errorf("job serves %d platforms in %d layer files, want 2 in 3 (the base once)", len(info.Platforms), len(info.Layers))
	}
	res := hostResults(rep)
	for host, arch := range map[string]string{"h01": "amd64", "h02": "amd64", "h03": "arm64", "h04": "arm64"} {
		got := imageOn(t, lab, host, ref)
		t.Logf("%s (%s): %s, image %s", host, arch, res[host].State, got)
		if res[host].State != orchestrator.HostDone || got != ids[arch] {
			t.Errorf("%s: %s %s, image %q; want linux/%s's %s", host, res[host].State, res[host].Error, got, arch, ids[arch])
		}
	}
	if r := res["h05"]; r.State != orchestrator.HostFailed || !strings.Contains(r.Error, "has no image for linux/arm/v7") || r.FromPeers+r.FromSeeder != 0 {
		t.Errorf("h05: %+v; want failed before download: no image for linux/arm/v7", r)
	} else {
		t.Logf("h05 (says armv7l): %s", r.Error)
	}
	if left := leftovers(t, lab, "h05", rep.JobID); left != "" {
		t.Errorf("h05 was written to: %s", left)
	}
	assertNothingLeft(t, lab, rep)
}

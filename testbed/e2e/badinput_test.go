package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// Bad input on a real lab. The inventory's own mistakes are unit tests of
// cmd/layercast (TestRun_BadInputExits2BeforeAnyHostIsTouched); here are
// the cases that need real hosts and a real daemon.
func TestBadInput(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 5, Rate: "100mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/bad:v1", Size: 20 * mb, Layers: 2})
	var table []string

	t.Run("config errors exit 2 before any host is touched", func(t *testing.T) {
		if err := loadLayerlessImage(t, lab, "lab/nolayers:v1"); err != nil {
			t.Logf("the daemon refuses an image without layers (%v); that path is covered by the imagecache unit tests", err)
		}
		logins := sshLogins(t, lab)
		for _, c := range []struct {
			name  string
			image string
			want  []string
		}{
			// A registry that refuses at once: Docker Hub may be slow to fail.
			{"unknown image", "127.0.0.1:9/lab/nosuch:v9", []string{"127.0.0.1:9/lab/nosuch:v9", "image not found"}},
			{"image with no layers", "lab/nolayers:v1", []string{"no layers"}},
		} {
			if c.name == "image with no layers" && imageOnBastion(t, lab, c.image) == "" {
				continue
			}
			j := startJob(t, lab, "-i", lab.InventoryPath(), c.image)
			_, code := j.wait(t, 3*time.Minute)
			msg := strings.TrimSpace(j.stderr.String())
			table = append(table, fmt.Sprintf("%s → exit %d: %s", c.name, code, msg))
			if code != 2 {
				t.Errorf("%s: exit %d, want 2; stderr %q", c.name, code, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%s: message %q does not say %q", c.name, msg, w)
				}
			}
			j.mu.Lock()
			if len(j.events) > 0 {
				t.Errorf("%s: %d events for a job that should not start", c.name, len(j.events))
			}
			j.mu.Unlock()
		}
		if got := sshLogins(t, lab); got != logins {
			t.Errorf("config errors: %d SSH logins on the hosts, want none", got-logins)
		}
		for _, h := range lab.Hosts() {
			if left := leftovers(t, lab, h, "none"); left != "" {
				t.Errorf("%s: %s", h, left)
			}
		}
	})

	t.Run("hosts that cannot take the job", func(t *testing.T) {
		// h01 logs in as a user that does not exist; h02 answers SSH but
		// its dockerd is stopped; h03 logs in as deploy, who may use
		// docker only through sudo, without become; h04 says it is
		// Darwin; h05 is fine.
		if err := lab.StopDocker(context.Background(), "h02"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := lab.StartDocker(context.Background(), "h02"); err != nil {
				t.Error(err)
			}
		})
		fakeDarwin(t, lab, "h04")
		inv := editInventory(t, lab, map[string]string{
			"h01": "    user: nosuchuser\n",
			"h03": "    user: deploy\n    become: false\n",
		})
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", inv, "lab/bad:v1")
		if code != 1 {
			t.Errorf("exit %d, want 1; stderr:\n%s", code, j.stderr.String())
		}
		res := hostResults(rep)
		for _, c := range []struct {
			host, what string
			want       []string
		}{
			{"h01", "wrong user", []string{"authentication failed"}},
			{"h02", "SSH but no docker", []string{"docker not usable", "not running", "start Docker"}},
			{"h03", "docker only through sudo, become not set", []string{"docker not usable", "set become: true"}},
			{"h04", "not Linux", []string{"not a linux host", "darwin", "needs Linux"}},
		} {
			r := res[c.host]
			table = append(table, fmt.Sprintf("%s (%s) → %s: %s", c.what, c.host, r.State, r.Error))
			if r.State != orchestrator.HostFailed {
				t.Errorf("%s (%s): %s, want failed", c.host, c.what, r.State)
			}
			for _, w := range c.want {
				if !strings.Contains(r.Error, w) {
					t.Errorf("%s (%s): reason %q does not say %q", c.host, c.what, r.Error, w)
				}
			}
		}
		if r := res["h05"]; r.State != orchestrator.HostDone || imageOn(t, lab, "h05", "lab/bad:v1") != img.ID {
			t.Errorf("h05: %+v", r)
		}
		assertNothingLeft(t, lab, rep)
	})

	t.Logf("bad input cases on the lab (the disk cases are in TestFaults):\n%s", strings.Join(table, "\n"))
}

// sshLogins counts the logins every host's sshd accepted so far.
func sshLogins(t *testing.T, lab *testbed.Lab) int {
	t.Helper()
	n := 0
	for _, h := range lab.Hosts() {
		m, _ := lab.Machine(h)
		b, err := os.ReadFile(filepath.Join(m.Dir, "sshd.log"))
		if err != nil {
			t.Fatalf("%s: %v", h, err)
		}
		n += strings.Count(string(b), "Accepted ")
	}
	return n
}

func imageOnBastion(t *testing.T, lab *testbed.Lab, ref string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), "bastion", "docker", "image", "inspect", "-f", "{{.Id}}", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// loadLayerlessImage loads a docker-save archive whose image has no
// layers into the bastion's daemon.
func loadLayerlessImage(t *testing.T, lab *testbed.Lab, ref string) error {
	t.Helper()
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/hello"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}},
	})
	sum := sha256.Sum256(config)
	configName := hex.EncodeToString(sum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": []string{}}})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, data := range map[string][]byte{configName: config, "manifest.json": manifest} {
		_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0)})
		_, _ = tw.Write(data)
	}
	_ = tw.Close()
	path := filepath.Join(t.TempDir(), "nolayers.tar")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := lab.Exec(context.Background(), "bastion", "docker", "load", "-i", path)
	return err
}

// fakeDarwin makes uname on a host say Darwin, by mounting a script over
// it inside the host's mount namespace (gone with the lab).
func fakeDarwin(t *testing.T, lab *testbed.Lab, host string) {
	t.Helper()
	m, _ := lab.Machine(host)
	script := filepath.Join(m.Dir, "root", "fake-uname")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncase \"$1\" in -m) echo arm64;; -sm) echo Darwin arm64;; *) echo Darwin;; esac\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(context.Background(), host, "mount", "--bind", "/root/fake-uname", "/usr/bin/uname"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = lab.Exec(context.Background(), host, "umount", "/usr/bin/uname") })
}

// editInventory writes a copy of the lab's inventory with extra lines
// after each named host's address, and returns its path.
func editInventory(t *testing.T, lab *testbed.Lab, extra map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(lab.InventoryPath())
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "./known_hosts", lab.KnownHostsPath())
	text = strings.ReplaceAll(text, "./id_ed25519", lab.IdentityPath())
	for host, lines := range extra {
		m, _ := lab.Machine(host)
		anchor := "    address: " + m.IP + "\n"
		if !strings.Contains(text, anchor) {
			t.Fatalf("inventory has no %q", anchor)
		}
		text = strings.Replace(text, anchor, anchor+lines, 1)
	}
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// TestReach covers the ways of reaching hosts: sudo for docker, SSH
// forwarding for hosts that cannot connect to the bastion, and a jump host
// from ~/.ssh/config. One lab, one small image, daemons cleaned between.
func TestReach(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3, Rate: "200mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/reach:v1", Size: 30 * mb, Layers: 2})
	everyHostHasIt := func(t *testing.T, rep *orchestrator.Report, code int, j *job) {
		t.Helper()
		if code != 0 {
			t.Fatalf("exit %d: %+v\n%s", code, rep.Hosts, j.stderr.String())
		}
		for _, h := range lab.Hosts() {
			if got := imageOn(t, lab, h, img.Tag); got != img.ID {
				t.Errorf("%s: %s is %q, want %s", h, img.Tag, got, img.ID)
			}
		}
		assertNothingLeft(t, lab, rep)
	}

	t.Run("become runs the node through sudo for a user without docker", func(t *testing.T) {
		removeImages(t, lab, img.Tag)
		out, err := lab.Exec(context.Background(), "h01", "su", "-s", "/bin/sh", "-c", "docker info", testbed.DeployUser)
		if err == nil {
			t.Fatalf("deploy can use docker without sudo, the test proves nothing: %s", out)
		}
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", lab.DeployInventoryPath(), img.Tag)
		everyHostHasIt(t, rep, code, j)
		// Again from the deploy user's node cache: the command that makes
		// the work dir starts the cached binary through sudo itself
		// (hostops.Conn.StartCached).
		removeImages(t, lab, img.Tag)
		rep, code, j = runJob(t, lab, 3*time.Minute, "-i", lab.DeployInventoryPath(), img.Tag)
		everyHostHasIt(t, rep, code, j)
		if nb := rep.NodeBinary; nb.FromCache != len(lab.Hosts()) {
			t.Errorf("second job: node binary %+v, want every host from its cache", nb)
		}
	})

	t.Run("tunnel serves hosts that cannot connect to the bastion", func(t *testing.T) {
		removeImages(t, lab, img.Tag)
		bastion, err := lab.Machine("bastion")
		if err != nil {
			t.Fatal(err)
		}
		// Every new connection from a host to the bastion is rejected; the
		// bastion's SSH connections to the hosts still work.
		for _, h := range lab.Hosts() {
			if _, err := lab.Exec(context.Background(), h, "iptables", "-I", "OUTPUT", "-d", bastion.IP, "-p", "tcp", "--syn", "-j", "REJECT"); err != nil {
				t.Fatalf("block %s -> bastion: %v", h, err)
			}
		}
		defer func() {
			for _, h := range lab.Hosts() {
				_, _ = lab.Exec(context.Background(), h, "iptables", "-D", "OUTPUT", "-d", bastion.IP, "-p", "tcp", "--syn", "-j", "REJECT")
			}
		}()
		// Without the tunnel the hosts cannot reach tracker or seeder.
		rep, code, _ := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), "--timeout", "40s", img.Tag)
		if code == 0 {
			t.Fatalf("the job succeeded without --tunnel although hosts cannot reach the bastion: %+v", rep.Hosts)
		}
		removeImages(t, lab, img.Tag)
		rep, code, j := runJob(t, lab, 3*time.Minute, "-i", lab.InventoryPath(), "--tunnel", img.Tag)
		everyHostHasIt(t, rep, code, j)
	})

	t.Run("ProxyJump from ~/.ssh/config", func(t *testing.T) {
		removeImages(t, lab, img.Tag)
		h1, _ := lab.Machine("h01")
		home := t.TempDir()
		if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
			t.Fatal(err)
		}
		// h02 and h03 are reached only through h01; the inventory names
		// them by alias, without addresses.
		var cfg, inv strings.Builder
		fmt.Fprintf(&cfg, "Host jump\n  HostName %s\n  User root\n  IdentityFile %s\n\n", h1.IP, lab.IdentityPath())
		inv.WriteString("known_hosts: " + lab.KnownHostsPath() + "\nhosts:\n")
		for _, h := range lab.Hosts() {
			m, _ := lab.Machine(h)
			fmt.Fprintf(&cfg, "Host lab-%s\n  HostName %s\n  User root\n  IdentityFile %s\n", h, m.IP, lab.IdentityPath())
			if h != "h01" {
				cfg.WriteString("  ProxyJump jump\n")
			}
			fmt.Fprintf(&inv, "  - name: lab-%s\n", h)
		}
		os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(cfg.String()), 0o600)
		invPath := filepath.Join(home, "inventory.yaml")
		os.WriteFile(invPath, []byte(inv.String()), 0o600)
		// A jump host hides the bastion's address from the hosts (they see
		// h01), so the hosts get the bastion's address explicitly.
		bastion, _ := lab.Machine("bastion")
		j := startJobEnv(t, lab, []string{"HOME=" + home, "SSH_AUTH_SOCK="}, "-i", invPath, "--bastion-addr", bastion.IP, img.Tag)
		rep, code := j.wait(t, 3*time.Minute)
		if rep == nil {
			t.Fatalf("no report; stderr:\n%s", j.stderr.String())
		}
		everyHostHasIt(t, rep, code, j)
	})
}

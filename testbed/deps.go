package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
)

// labDeps maps each program the lab runs to the Debian package that ships it.
func labDeps() []struct{ program, pkg string } {
	return []struct{ program, pkg string }{
		{"dockerd", "docker.io"},
		{"docker", "docker.io"},
		{"sshd", "openssh-server"},
		{"docker-registry", "docker-registry"},
		{"containerd", "containerd"},
		{"ctr", "containerd"},
		{"runc", "runc"},
		{"ip", "iproute2"},
		{"tc", "iproute2"},
		{"sudo", "sudo"},
		{"nsenter", "util-linux"},
		{"unshare", "util-linux"},
		{"mount", "mount"},
		{"debootstrap", "debootstrap"}, // LAYERCAST_ROOTFS=debootstrap: a real root filesystem for TestCompressedOnTheWire
	}
}

// MissingDeps returns the Debian packages whose programs are not on PATH.
func MissingDeps() []string {
	var pkgs []string
	for _, d := range labDeps() {
		if _, err := lookPath(d.program); err != nil && !slices.Contains(pkgs, d.pkg) {
			pkgs = append(pkgs, d.pkg)
		}
	}
	return pkgs
}

// lookPath also searches the sbin directories, which a non-login PATH may
// lack.
func lookPath(program string) (string, error) {
	if p, err := exec.LookPath(program); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + program
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// EnsureDeps installs the lab's Debian packages with apt-get when any is
// missing. Installing needs root and Debian's package archive.
func EnsureDeps(ctx context.Context) error {
	missing := MissingDeps()
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("install %v: apt-get not found; install them by hand", missing)
	}
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	update := exec.CommandContext(ctx, "apt-get", "update")
	update.Env = env
	if out, err := update.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %w: %s", err, tail(out))
	}
	args := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	install := exec.CommandContext(ctx, "apt-get", args...)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install %v: %w: %s", missing, err, tail(out))
	}
	if still := MissingDeps(); len(still) > 0 {
		return fmt.Errorf("still missing after apt-get install: %v", still)
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

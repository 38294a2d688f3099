package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// Down stops every process of the lab and removes its namespaces, links,
// mounts, state and files. It is safe to call again on a lab that is down.
func (l *Lab) Down(ctx context.Context) error {
	l.mu.Lock()
	st := l.st
	machines := slices.Clone(st.Machines)
	l.mu.Unlock()
	var errs []error

	// Daemons first, politely: dockerd stops its containerd and containers;
	// a containerd host's containers (shims) go with its namespaces below.
	var g errgroup.Group
	g.SetLimit(32)
	for _, m := range machines {
		for _, p := range []Proc{m.Docker, m.Containerd, m.SSHD, m.Registry} {
			g.Go(func() error { return p.stop(ctx, 15*time.Second) })
		}
	}
	if err := g.Wait(); err != nil {
		errs = append(errs, err)
	}
	// Then everything else still living in a lab namespace.
	var nsFiles []string
	for _, m := range machines {
		nsFiles = append(nsFiles, m.NetnsPath())
		if m.MountNS != "" {
			nsFiles = append(nsFiles, m.MountNS)
		}
	}
	if rest, err := procsInNamespaces(nsFiles); err != nil {
		errs = append(errs, err)
	} else if err := killAll(ctx, rest); err != nil {
		errs = append(errs, err)
	}

	for _, m := range machines {
		for _, f := range []string{m.MountNS, m.UTSNS} {
			if f == "" {
				continue
			}
			if err := unmountIfMounted(ctx, f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	nsDir := labNSDir(st.Name)
	if err := unmountIfMounted(ctx, nsDir); err != nil {
		errs = append(errs, err)
	}
	for _, m := range machines {
		if _, err := os.Stat(m.NetnsPath()); err == nil {
			if _, err := run(ctx, nil, "ip", "netns", "delete", m.Netns); err != nil {
				errs = append(errs, err)
			}
		}
		for _, link := range []string{m.Veth, m.Ifb} {
			if link == "" { // a lab from before the IFBs
				continue
			}
			if err := deleteLink(ctx, link); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := deleteLink(ctx, st.Bridge); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroups(st.Name, machines); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		// Keep the state so a second Down can finish the job.
		return fmt.Errorf("take down lab %s: %w", st.Name, errors.Join(errs...))
	}
	if err := clearDir(st.Dir); err != nil {
		return err
	}
	if st.CreatedDir {
		if err := os.Remove(st.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove lab dir: %w", err)
		}
	}
	if err := os.RemoveAll(labStateDir(st.Name)); err != nil {
		return fmt.Errorf("remove lab state: %w", err)
	}
	l.log.Info("lab down")
	return nil
}

// unmountIfMounted unmounts path if it is a mount point.
func unmountIfMounted(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	mounted, err := isMountPoint(path)
	if err != nil || !mounted {
		return err
	}
	if _, err := run(ctx, nil, "umount", path); err != nil {
		if _, lerr := run(ctx, nil, "umount", "-l", path); lerr != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this process's
// mount namespace.
func isMountPoint(path string) (bool, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mountinfo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && unescapeMount(f[4]) == path {
			return true, nil
		}
	}
	return false, nil
}

// unescapeMount decodes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func linkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// deleteLink deletes a link in the default namespace if it is there. A veth
// also goes away by itself shortly after its peer's namespace does.
func deleteLink(ctx context.Context, name string) error {
	if !linkExists(name) {
		return nil
	}
	if _, err := run(ctx, nil, "ip", "link", "delete", name); err != nil && linkExists(name) {
		return err
	}
	return nil
}

// labCgroup is the cgroup under which the lab's daemons put containers.
func labCgroup(name string) string { return "layercast-lab-" + name }

// removeCgroups removes the lab's (empty) container cgroups from every
// cgroup hierarchy.
func removeCgroups(name string, machines []*Machine) error {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	var errs []error
	for _, root := range roots {
		dir := filepath.Join(root, labCgroup(name))
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for _, m := range machines {
			if err := os.Remove(filepath.Join(dir, m.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
			}
		}
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove cgroup: %w", err))
		}
	}
	return errors.Join(errs...)
}

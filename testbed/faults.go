package testbed

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotHost reports a fault aimed at a machine that is not a Docker host.
var ErrNotHost = errors.New("not a lab host")

func (l *Lab) host(name string) (*Machine, error) {
	m, err := l.machine(name)
	if err != nil {
		return nil, err
	}
	if m.Role != RoleHost {
		return nil, fmt.Errorf("%w: %s", ErrNotHost, name)
	}
	return m, nil
}

// dockerMachine is a machine that runs dockerd: a host or the bastion.
func (l *Lab) dockerMachine(name string) (*Machine, error) {
	m, err := l.machine(name)
	if err != nil {
		return nil, err
	}
	if m.Role != RoleHost && m.Role != RoleBastion {
		return nil, fmt.Errorf("%w: %s runs no dockerd", ErrNotHost, name)
	}
	return m, nil
}

// KillHost kills every process of a host at once with SIGKILL: its sshd,
// its dockerd and containerd, and every session and program running in it.
// The host's namespaces stay; StartDocker and StartSSHD bring it back.
func (l *Lab) KillHost(ctx context.Context, name string) error {
	m, err := l.host(name)
	if err != nil {
		return err
	}
	procs, err := procsInNamespaces([]string{m.NetnsPath(), m.MountNS})
	if err != nil {
		return fmt.Errorf("kill host %s: %w", name, err)
	}
	if err := killAll(ctx, procs); err != nil {
		return fmt.Errorf("kill host %s: %w", name, err)
	}
	l.mu.Lock()
	m.Docker, m.Containerd, m.SSHD = Proc{}, Proc{}, Proc{}
	l.mu.Unlock()
	return l.save()
}

// CutLink takes a machine's link down, as if its cable were pulled.
// Connections stall; HealLink brings the link back.
func (l *Lab) CutLink(ctx context.Context, name string) error {
	m, err := l.machine(name)
	if err != nil {
		return err
	}
	if _, err := run(ctx, nil, "ip", "link", "set", m.Veth, "down"); err != nil {
		return fmt.Errorf("cut link of %s: %w", name, err)
	}
	l.mu.Lock()
	m.Cut = true
	l.mu.Unlock()
	return l.save()
}

// SlowLink divides the rate of a machine's link, both ways, by factor.
func (l *Lab) SlowLink(ctx context.Context, name string, factor float64) error {
	if factor < 1 {
		return fmt.Errorf("slow link of %s: factor %v < 1", name, factor)
	}
	m, err := l.machine(name)
	if err != nil {
		return err
	}
	if err := l.setRate(ctx, m, int64(float64(l.st.Rate)/factor)); err != nil {
		return fmt.Errorf("slow link of %s: %w", name, err)
	}
	l.mu.Lock()
	m.RateFactor = factor
	l.mu.Unlock()
	return l.save()
}

// HealLink brings a machine's link back up at the lab's rate.
func (l *Lab) HealLink(ctx context.Context, name string) error {
	m, err := l.machine(name)
	if err != nil {
		return err
	}
	if err := l.setRate(ctx, m, l.st.Rate); err != nil {
		return fmt.Errorf("heal link of %s: %w", name, err)
	}
	if _, err := run(ctx, nil, "ip", "link", "set", m.Veth, "up"); err != nil {
		return fmt.Errorf("heal link of %s: %w", name, err)
	}
	l.mu.Lock()
	m.Cut, m.RateFactor = false, 0
	l.mu.Unlock()
	return l.save()
}

func (l *Lab) setRate(ctx context.Context, m *Machine, rate int64) error {
	// The data queue follows the rate (queueLimit).
	var lines []string
	for _, dev := range []string{m.Veth, m.Ifb} {
		lines = append(lines, classLines("change", dev, rate)...)
		lines = append(lines, queueLine("change", dev, rate))
	}
	return runBatch(ctx, lines, "tc", "-batch", "-")
}

// fillSize is the size of the small file system FillDisk puts on /tmp.
const fillSize = 64 << 20

// FillDisk mounts a small tmpfs over a host's /tmp and fills it until only
// free bytes are left, so programs that write there run out of space.
// Programs already holding files in the old /tmp keep them. ClearDisk
// undoes it.
func (l *Lab) FillDisk(ctx context.Context, name string, free int64) error {
	m, err := l.host(name)
	if err != nil {
		return err
	}
	if free < 0 || free >= fillSize {
		return fmt.Errorf("fill disk of %s: free %d bytes: want 0..%d", name, free, fillSize-1)
	}
	script := fmt.Sprintf(
		"set -e; mount -t tmpfs -o size=%d,mode=1777 lab-full-tmp /tmp; "+
			"head -c %d /dev/zero > /tmp/.lab-filler || true; chmod 0400 /tmp/.lab-filler",
		fillSize, fillSize-free)
	if _, err := run(ctx, nil, "nsenter", "--mount="+m.MountNS, "sh", "-c", script); err != nil {
		return fmt.Errorf("fill disk of %s: %w", name, err)
	}
	l.mu.Lock()
	m.TmpFull = true
	l.mu.Unlock()
	return l.save()
}

// ClearDisk removes what FillDisk put over a host's /tmp.
func (l *Lab) ClearDisk(ctx context.Context, name string) error {
	m, err := l.host(name)
	if err != nil {
		return err
	}
	script := "n=0; while grep -q ' - tmpfs lab-full-tmp ' /proc/self/mountinfo && [ $n -lt 10 ]; do umount -l /tmp; n=$((n+1)); done"
	if _, err := run(ctx, nil, "nsenter", "--mount="+m.MountNS, "sh", "-c", script); err != nil {
		return fmt.Errorf("clear disk of %s: %w", name, err)
	}
	l.mu.Lock()
	m.TmpFull = false
	l.mu.Unlock()
	return l.save()
}

// StopDocker stops a host's or the bastion's dockerd (SIGTERM, then
// SIGKILL after 15s).
func (l *Lab) StopDocker(ctx context.Context, name string) error {
	m, err := l.dockerMachine(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	p := m.Docker
	l.mu.Unlock()
	if err := p.stop(ctx, 15*time.Second); err != nil {
		return fmt.Errorf("stop dockerd of %s: %w", name, err)
	}
	l.mu.Lock()
	m.Docker = Proc{}
	l.mu.Unlock()
	return l.save()
}

// StartDocker starts a host's or the bastion's dockerd again and waits
// until it answers.
func (l *Lab) StartDocker(ctx context.Context, name string) error {
	m, err := l.dockerMachine(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	running := m.Docker.Alive()
	l.mu.Unlock()
	if running {
		return nil
	}
	if err := l.startDocker(m); err != nil {
		return fmt.Errorf("start dockerd of %s: %w", name, err)
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := m.waitDocker(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("start dockerd of %s: %w", name, err)
	}
	return nil
}

// StopContainerd stops a containerd host's daemon (SIGTERM, then SIGKILL
// after 15s).
func (l *Lab) StopContainerd(ctx context.Context, name string) error {
	m, err := l.containerdHost(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	p := m.Containerd
	l.mu.Unlock()
	if err := p.stop(ctx, 15*time.Second); err != nil {
		return fmt.Errorf("stop containerd of %s: %w", name, err)
	}
	l.mu.Lock()
	m.Containerd = Proc{}
	l.mu.Unlock()
	return l.save()
}

// StartContainerd starts a containerd host's daemon again and waits until
// it answers.
func (l *Lab) StartContainerd(ctx context.Context, name string) error {
	m, err := l.containerdHost(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	running := m.Containerd.Alive()
	l.mu.Unlock()
	if running {
		return nil
	}
	if err := l.startContainerd(m); err != nil {
		return fmt.Errorf("start containerd of %s: %w", name, err)
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := m.waitContainerd(ctx, 60*time.Second); err != nil {
		return fmt.Errorf("start containerd of %s: %w", name, err)
	}
	return nil
}

func (l *Lab) containerdHost(name string) (*Machine, error) {
	m, err := l.host(name)
	if err != nil {
		return nil, err
	}
	if !m.runsContainerd() {
		return nil, fmt.Errorf("%w: %s runs %s, not containerd", ErrNotHost, name, m.RuntimeOf())
	}
	return m, nil
}

// StopSSHD stops a host's sshd listener; sessions already open go on, as
// when an operator stops the ssh service.
func (l *Lab) StopSSHD(ctx context.Context, name string) error {
	m, err := l.host(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	p := m.SSHD
	l.mu.Unlock()
	if err := p.stop(ctx, 5*time.Second); err != nil {
		return fmt.Errorf("stop sshd of %s: %w", name, err)
	}
	l.mu.Lock()
	m.SSHD = Proc{}
	l.mu.Unlock()
	return l.save()
}

// StartSSHD starts a host's sshd again and waits until it accepts
// connections.
func (l *Lab) StartSSHD(ctx context.Context, name string) error {
	m, err := l.host(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	running := m.SSHD.Alive()
	l.mu.Unlock()
	if running {
		return nil
	}
	if err := l.startSSHD(m); err != nil {
		return fmt.Errorf("start sshd of %s: %w", name, err)
	}
	if err := l.save(); err != nil {
		return err
	}
	if err := waitPort(ctx, l.bastion().NetnsPath(), m.IP+":22", 30*time.Second); err != nil {
		return fmt.Errorf("start sshd of %s: %w", name, err)
	}
	return nil
}

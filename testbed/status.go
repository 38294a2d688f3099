package testbed

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MachineStatus is what Status reports for one lab machine.
type MachineStatus struct {
	Name    string
	Role    Role
	IP      string
	Runtime string // a host's: docker or containerd
	Docker  bool   // dockerd runs
	// Containerd: a containerd host's containerd runs.
	Containerd bool
	SSHD       bool  // sshd runs
	Registry   bool  // docker-registry runs
	Procs      int   // processes in the machine's namespaces
	PSS        int64 // their proportional set size, bytes
	Faults     string
}

// Status reports every machine's daemons, processes and memory.
func (l *Lab) Status() ([]MachineStatus, error) {
	l.mu.Lock()
	machines := make([]Machine, len(l.st.Machines))
	for i, m := range l.st.Machines {
		machines[i] = *m
	}
	l.mu.Unlock()
	var out []MachineStatus
	for _, m := range machines {
		ns := []string{m.NetnsPath()}
		if m.MountNS != "" {
			ns = append(ns, m.MountNS)
		}
		procs, err := procsInNamespaces(ns)
		if err != nil {
			return nil, err
		}
		s := MachineStatus{
			Runtime: map[bool]string{true: m.RuntimeOf()}[m.Role == RoleHost],
			Name:    m.Name, Role: m.Role, IP: m.IP,
			Docker: m.Docker.Alive(), Containerd: m.Containerd.Alive(), SSHD: m.SSHD.Alive(), Registry: m.Registry.Alive(),
			Procs: len(procs),
		}
		for _, p := range procs {
			s.PSS += pss(p.Pid)
		}
		var faults []string
		if m.Cut {
			faults = append(faults, "link cut")
		}
		if m.RateFactor > 1 {
			faults = append(faults, fmt.Sprintf("link slowed %gx", m.RateFactor))
		}
		if m.TmpFull {
			faults = append(faults, "/tmp full")
		}
		if len(faults) > 0 {
			s.Faults = " [" + strings.Join(faults, ", ") + "]"
		}
		out = append(out, s)
	}
	return out, nil
}

// pss reads a process's proportional set size in bytes.
func pss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

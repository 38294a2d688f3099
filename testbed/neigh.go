package testbed

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// neighSysctlDir holds the kernel's ARP table limits. That table is one for
// the whole machine: the neighbour entries of every network namespace count
// against the same gc_thresh limits.
const neighSysctlDir = "/proc/sys/net/ipv4/neigh/default"

// neighLimits are the ARP table's garbage-collection thresholds: below
// gc_thresh1 entries are never collected, above gc_thresh2 they are
// collected after 5 s, and gc_thresh3 is the hard maximum.
type neighLimits [3]int

// neighLimitsFor returns the limits a lab of machines needs, never lower
// than cur. In a busy swarm every machine resolves every other, so the
// machine-wide table holds about machines² entries for this lab alone; the
// soft limit leaves room for that twice over (a second lab, the machine's
// own neighbours). The kernel's defaults (128/512/1024) hold 32 machines:
// past that the hosts that joined last could resolve no peer at all
// ("neighbor table overflow", issue 5's 40-host bench).
func neighLimitsFor(machines int, cur neighLimits) neighLimits {
	need := 2 * machines * machines
	return neighLimits{
		max(cur[0], need/4),
		max(cur[1], need),
		max(cur[2], 2*need),
	}
}

// raiseNeighLimits raises the machine's ARP table limits to what a lab of
// machines needs. They stay raised after the lab is down (they only size a
// table), and they are never lowered.
func raiseNeighLimits(log *slog.Logger, machines int) error {
	var cur neighLimits
	for i := range cur {
		b, err := os.ReadFile(filepath.Join(neighSysctlDir, "gc_thresh"+strconv.Itoa(i+1)))
		if err != nil {
			return fmt.Errorf("read ARP table limits: %w", err)
		}
		if cur[i], err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("read ARP table limits: gc_thresh%d: %w", i+1, err)
		}
	}
	want := neighLimitsFor(machines, cur)
	if want == cur {
		return nil
	}
	// Largest first: the kernel keeps gc_thresh1 ≤ gc_thresh2 ≤ gc_thresh3.
	for i := len(want) - 1; i >= 0; i-- {
		path := filepath.Join(neighSysctlDir, "gc_thresh"+strconv.Itoa(i+1))
		if err := os.WriteFile(path, []byte(strconv.Itoa(want[i])), 0o644); err != nil {
			return fmt.Errorf("raise ARP table limit gc_thresh%d to %d: %w", i+1, want[i], err)
		}
	}
	log.Info("raised the machine's ARP table limits (shared by every network namespace)",
		"machines", machines, "gc_thresh", fmt.Sprintf("%d/%d/%d → %d/%d/%d", cur[0], cur[1], cur[2], want[0], want[1], want[2]))
	return nil
}

package tui

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/layercast/layercast/orchestrator"
)

// The run screen skips filtering and sorting when nothing they read
// changed. Whatever the job does, its rows must be those a fresh filter
// and sort would give, and the header's counts those of a fresh count.
func TestRunRows_FollowEveryChangeOfTheJob(t *testing.T) {
	for _, sortBy := range []sortOrder{sortState, sortProgress, sortName} {
		for _, filter := range []string{"", "down", "rack2", "node-01"} {
			t.Run(fmt.Sprintf("%s/%q", sortBy, filter), func(t *testing.T) {
				f := newFrameFleet(t, 60, 120, 40)
				f.m.run.sortBy = sortBy
				f.m.run.filter.SetValue(filter)
				f.m.run = f.m.run.refresh(f.m.c, f.m.job)
				check := func(step string) {
					t.Helper()
					requireFreshRows(t, f.m, step)
				}
				check("start")

				rounds := f.singleEventMsgs()
				for _, msg := range rounds[0][:20] {
					f.update(msg)
					check("one progress event")
				}
				f.update(tea.KeyMsg{Type: tea.KeyDown})
				f.update(tea.KeyMsg{Type: tea.KeyDown})
				check("cursor moved")
				f.update(f.batchMsgs()[1])
				check("a batch of progress")
				at := f.clock.t
				f.events(
					orchestrator.Event{Time: at, Kind: orchestrator.EventHostState, Host: "node-002", State: orchestrator.HostImporting},
					orchestrator.Event{Time: at, Kind: orchestrator.EventHostState, Host: "node-013", State: orchestrator.HostDone},
					orchestrator.Event{Time: at, Kind: orchestrator.EventHostState, Host: "node-020", State: "rebooting"},
				)
				check("states changed")
				f.events(orchestrator.Event{Time: at, Kind: orchestrator.EventHostState, Host: "node-999", State: orchestrator.HostConnecting})
				check("a host the job did not name")
				f.update(tea.WindowSizeMsg{Width: 100, Height: 30})
				check("resized")
				f.update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("s")})
				check("sort changed")
				for _, msg := range rounds[1] {
					f.update(msg)
				}
				check("a round of progress under the new sort")
				f.events(orchestrator.Event{Time: at, Kind: orchestrator.EventJobDone, Report: &orchestrator.Report{Hosts: []orchestrator.HostResult{
					{Host: "node-001", State: orchestrator.HostDone}, {Host: "node-005", State: orchestrator.HostCancelled},
				}}})
				check("report")
			})
		}
	}
}

// requireFreshRows fails unless m's run rows and state counts are those
// computed afresh from its job.
func requireFreshRows(t *testing.T, m model, step string) {
	t.Helper()
	fresh := m.run
	fresh.rows = nil // filterSort reuses the rows' array
	got, want := rowNames(m.run.rows), rowNames(fresh.filterSort(m.job))
	if !slices.Equal(got, want) {
		t.Fatalf("%s: rows %v\nwant %v", step, got, want)
	}
	if len(got) > 0 && m.run.selected != got[m.run.cursor] {
		t.Fatalf("%s: cursor on row %d, %s, selected %s", step, m.run.cursor, got[m.run.cursor], m.run.selected)
	}
	counts := make(map[orchestrator.HostState]int)
	for _, h := range m.job.hosts {
		counts[h.state]++
	}
	if !maps.Equal(m.job.counts, counts) {
		t.Fatalf("%s: counts %v, want %v", step, m.job.counts, counts)
	}
}

func rowNames(rows []*hostRow) []string {
	out := make([]string, len(rows))
	for i, h := range rows {
		out[i] = h.name
	}
	return out
}

func TestRankedState_InvertsStateRank(t *testing.T) {
	for r := range rankedStates {
		if got := stateRank(rankedState(r)); got != r {
			t.Errorf("stateRank(rankedState(%d)) = %d", r, got)
		}
	}
	if r := stateRank("rebooting"); r != rankedStates {
		t.Errorf("an unknown state ranks %d, want %d", r, rankedStates)
	}
}

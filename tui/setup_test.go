package tui

import (
	"slices"
	"testing"

	"github.com/layercast/layercast/orchestrator"
)

func TestSetupScreen_ListsHostsAndCompletesImage(t *testing.T) {
	eng := &ReplayEngine{}
	tm := startConsole(t, testConfig(eng, labCatalog(), recordingStart))
	waitFor(t, tm, "8 of 8 selected", "4 local images")

	press(tm, "lab/a")
	waitFor(t, tm, "▸ lab/app:v2", "  lab/app:v3")
	press(tm, "down", "tab")
	waitFor(t, tm, "8 hosts · image lab/app:v3 (300 MB, 5 layers)")

	requireFrame(t, finalView(t, tm), testWidth, testHeight)
	if n := len(eng.Calls()); n != 0 {
		t.Fatalf("engine ran %d times before enter", n)
	}
}

func TestSetupScreen_StartsJobOnSelectedGroup(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "finished-job.jsonl")}}
	tm := startConsole(t, testConfig(eng, labCatalog(), recordingStart))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "lab/app:v3")
	// Focus: image → mode → tunnel → concurrency → source → max rate →
	// per host → hosts.
	press(tm, "tab", "right", "tab", "right", "tab", "right", "right", "tab", "right", "right", "tab", "right", "right", "tab", "right", "tab", "g")
	waitFor(t, tm, "4 of 8 selected · group rack1")
	press(tm, "g")
	waitFor(t, tm, "4 of 8 selected · group rack2")
	press(tm, "enter")
	// The run screen shows before the engine runs (it starts on a command
	// of its own): wait for the job's end, which only the engine brings.
	waitFor(t, tm, "HOST", "finished in")
	finalView(t, tm)

	calls := eng.Calls()
	if len(calls) != 1 {
		t.Fatalf("engine ran %d times, want 1", len(calls))
	}
	got := calls[0]
	if want := []string{"h05", "h06", "h07", "h08"}; !slices.Equal(got.Hosts, want) {
		t.Errorf("hosts = %v, want %v", got.Hosts, want)
	}
	if got.Image != "lab/app:v3" || got.Mode != orchestrator.ModeRegistry || !got.Tunnel || got.Concurrency != 2 {
		t.Errorf("options = image %q mode %q tunnel %v concurrency %d; want lab/app:v3 registry true 2",
			got.Image, got.Mode, got.Tunnel, got.Concurrency)
	}
	if got.Source != orchestrator.SourceRegistry || got.MaxRate != 5e6 || got.HostMaxRate != 1e6 {
		t.Errorf("options = source %q max rate %d host max rate %d; want registry 5000000 1000000", got.Source, got.MaxRate, got.HostMaxRate)
	}
	if got.InventoryPath != labInv {
		t.Errorf("inventory = %q, want %q", got.InventoryPath, labInv)
	}
}

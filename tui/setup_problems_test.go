package tui

import (
	"errors"
	"testing"
	"time"
)

func TestSetupScreen_BadInventoryShowsWhatToFix(t *testing.T) {
	cat := labCatalog()
	cat.InventoryErrs = map[string]error{labInv: errors.New("lab/inventory.yaml:7: hosts[2].port: not a number")}
	eng := &ReplayEngine{}
	tm := startConsole(t, testConfig(eng, cat, recordingStart))
	waitFor(t, tm, "✗ cannot load", "✗ load inventory lab/inventory.yaml: lab/inventory.yaml:7: hosts[2].port: not",
		"a number — fix the file, then press enter on Inventory to reload")

	// Enter does not start a job from a broken inventory.
	press(tm, "lab/app:v3", "enter")
	waitFor(t, tm, "▷ 0 hosts")

	// Fixed on disk: reloading from the Inventory field shows the hosts.
	cat.SetInventory(labInv, labCatalog().Inventories[labInv])
	// Image → mode → tunnel → concurrency → source → max rate → per host →
	// hosts → inventory.
	press(tm, "tab", "tab", "tab", "tab", "tab", "tab", "tab", "tab", "enter")
	waitFor(t, tm, "8 of 8 selected", "8 hosts · image lab/app:v3 (300 MB, 5 layers)")
	finalView(t, tm)
	if n := len(eng.Calls()); n != 0 {
		t.Fatalf("engine ran %d times", n)
	}
}

func TestSetupScreen_NothingSelectedAndNoImageBlockStart(t *testing.T) {
	eng := &ReplayEngine{}
	tm := startConsole(t, testConfig(eng, labCatalog(), recordingStart))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "enter")
	waitFor(t, tm, "✗ no image — type a reference on Image")
	press(tm, "lab/app:v3", "tab", "tab", "tab", "tab", "tab", "tab", "tab", "a")
	waitFor(t, tm, "0 of 8 selected")
	press(tm, "enter")
	waitFor(t, tm, "✗ no hosts selected — on Hosts, press a to select all")
	finalView(t, tm)
	if n := len(eng.Calls()); n != 0 {
		t.Fatalf("engine ran %d times", n)
	}
}

func TestSetupScreen_UnknownImageNeedsSecondEnter(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "finished-job.jsonl")}}
	tm := startConsole(t, testConfig(eng, labCatalog(), recordingStart.Add(50*time.Second)))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "registry.example/tools:9", "enter")
	waitFor(t, tm, `✗ image "registry.example/tools:9" is not on the bastion`, "or press enter again to take it from its registry")
	if n := len(eng.Calls()); n != 0 {
		t.Fatalf("engine ran on the first enter")
	}
	press(tm, "enter")
	waitFor(t, tm, "finished in")
	finalView(t, tm)
	if calls := eng.Calls(); len(calls) != 1 || calls[0].Image != "registry.example/tools:9" {
		t.Fatalf("engine calls %+v, want one with the typed image", calls)
	}
}

func TestSetupScreen_EngineRefusalReturnsToSetup(t *testing.T) {
	eng := &ReplayEngine{} // no recording: Run fails before job_started
	tm := startConsole(t, testConfig(eng, labCatalog(), recordingStart))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "lab/app:v3", "enter")
	waitFor(t, tm, "! the job did not start: replay engine: no recording", "▶ 8 hosts")
	finalView(t, tm)
}

package tui

import (
	"testing"
	"time"
)

// startRecordedJob opens the console on the lab and starts the job of the
// recording, frozen at clock time now.
func startRecordedJob(t *testing.T, eng *ReplayEngine, now time.Time) *console {
	t.Helper()
	tm := startConsole(t, testConfig(eng, labCatalog(), now))
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "lab/app:v3", "enter")
	return tm
}

func TestRunScreen_ShowsHostsProgressAndFailure(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "cancelled-job.jsonl")}}
	tm := startRecordedJob(t, eng, recordingStart.Add(15400*time.Millisecond))
	waitFor(t, tm, "3 done", "1 failed", "4 downloading", "▸ distribute layers")
	requireFrame(t, finalView(t, tm), testWidth, testHeight)
}

func TestHostDetail_ShowsLayersSkippedAndLog(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "cancelled-job.jsonl")}}
	tm := startRecordedJob(t, eng, recordingStart.Add(15400*time.Millisecond))
	waitFor(t, tm, "3 done", "4 downloading")
	press(tm, "/", "h04", "enter")
	waitFor(t, tm, "rows 1–1 of 1")
	press(tm, "enter")
	waitFor(t, tm, "LAYERS", "1 skipped")
	requireFrame(t, finalView(t, tm), testWidth, testHeight)
}

func TestHostDetail_ShowsFullErrorOfFailedHost(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "cancelled-job.jsonl")}}
	tm := startRecordedJob(t, eng, recordingStart.Add(15400*time.Millisecond))
	waitFor(t, tm, "1 failed", "4 downloading")
	// Sorted by state, the failed host is the first row.
	press(tm, "enter")
	// The row truncates the reason; the detail shows all of it.
	waitFor(t, tm, "host h05", "ERROR", "refusing to go on)", "nothing was uploaded")
	press(tm, "esc")
	waitFor(t, tm, "PEERS")
	finalView(t, tm)
}

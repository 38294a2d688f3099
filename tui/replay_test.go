package tui

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
)

// A recorded job in which one host fails and the operator cancels: the run
// screen asks before cancelling, shows the teardown of every host, then
// the summary names the failed host and the cancelled ones.
func TestReplay_FailedHostThenCancel(t *testing.T) {
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "cancelled-job.jsonl")}}
	tm := startRecordedJob(t, eng, recordingStart.Add(15400*time.Millisecond))
	waitFor(t, tm, "3 done", "1 failed", "4 downloading")

	press(tm, "q")
	waitFor(t, tm, "Cancel the job? Every node stops and its files are removed on 8 hosts.")
	press(tm, "n")
	waitFor(t, tm, "q cancel job")
	press(tm, "ctrl+c")
	waitFor(t, tm, "Cancel the job?")
	press(tm, "y")

	waitFor(t, tm, "cancelled after 0:17", "teardown finished on 8 of 8 hosts · tracker and seeder stopped")
	requireFrame(t, finalView(t, tm), testWidth, testHeight)
}

func TestSummaryScreen_ListsResultsWritesReportRetriesFailed(t *testing.T) {
	retry := Recording{Events: []orchestrator.Event{
		{Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{ID: "88aa01", Image: "lab/app:v3", Hosts: []string{"h05"}}},
		{Kind: orchestrator.EventHostState, Host: "h05", State: orchestrator.HostConnecting},
		{Kind: orchestrator.EventJobDone, Report: &orchestrator.Report{Cancelled: true}},
	}, HoldFrom: 2}
	eng := &ReplayEngine{Recordings: []Recording{readRecording(t, "finished-job.jsonl"), retry}}
	cfg := testConfig(eng, labCatalog(), recordingStart.Add(50*time.Second))
	reportPath := filepath.Join(t.TempDir(), "report.json")
	cfg.WriteReport = func(r *orchestrator.Report) (string, error) {
		b, err := json.Marshal(r)
		if err != nil {
			return "", err
		}
		return reportPath, os.WriteFile(reportPath, b, 0o600)
	}
	tm := startConsole(t, cfg)
	waitFor(t, tm, "8 of 8 selected", "4 local images")
	press(tm, "lab/app:v3", "enter")
	waitFor(t, tm, "finished in 0:43", "✗ 1 of 8 failed", "7 done")
	frame := tm.frame.get()

	press(tm, "w")
	waitFor(t, tm, "✓ report written to …", "/report.json")
	var rep orchestrator.Report
	b, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	if got := rep.Failed(); !slices.Equal(got, []string{"h05"}) || len(rep.Hosts) != 8 {
		t.Errorf("written report: %d hosts, failed %v; want 8 hosts, failed [h05]", len(rep.Hosts), got)
	}

	press(tm, "r")
	waitFor(t, tm, "job 88aa01", "1 connecting")
	finalView(t, tm)
	calls := eng.Calls()
	if len(calls) != 2 {
		t.Fatalf("engine ran %d times, want 2", len(calls))
	}
	if got := calls[1]; !slices.Equal(got.Hosts, []string{"h05"}) || len(got.Groups) != 0 || got.Image != "lab/app:v3" {
		t.Errorf("retry ran hosts %v groups %v image %q; want [h05], no groups, lab/app:v3", got.Hosts, got.Groups, got.Image)
	}
	requireFrame(t, frame, testWidth, testHeight)
}

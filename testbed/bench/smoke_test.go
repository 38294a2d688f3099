package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

// TestBench_SmokeRunFinishesEveryRunAndWritesEveryOutput runs the bench
// small (2 sizes × 2 cluster sizes, both modes) to keep it working; it
// checks that every run finished and the outputs exist, not speed.
func TestBench_SmokeRunFinishesEveryRunAndWritesEveryOutput(t *testing.T) {
	bin := labBin(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := Config{
		Bin: bin, Sizes: []int64{10 * MB, 20 * MB}, Hosts: []int{2, 3}, Rate: "200mbit", Layers: 2,
		Out: out, Ephemeral: true, LabName: fmt.Sprintf("t-bench-smoke-%d", os.Getpid()%10000),
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	rs, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// per size: the single-host P2P run, then 2 cluster sizes × 2 modes
	if len(rs) != 2*(1+2*2) {
		t.Errorf("%d runs, want 10", len(rs))
	}
	for _, r := range rs {
		if r.Failed > 0 || r.Propagation <= 0 || r.JobID == "" {
			t.Errorf("%s %d hosts %d MB: %+v", r.Mode, r.Hosts, r.Size/MB, r)
		}
		if r.Mode == ModeRegistry && r.RegistryLink < int64(r.Hosts)*r.Size {
			t.Errorf("registry run at %d hosts: registry sent %d bytes, less than hosts × size", r.Hosts, r.RegistryLink)
		}
		if r.Mode == ModeP2P && r.BastionEgress == 0 {
			t.Errorf("P2P run at %d hosts: the bastion seeded nothing", r.Hosts)
		}
		// Clean daemons lacked every layer: the bench's image is
		// generated, so its layers add up to about the size asked.
		if r.Missing < r.Size*9/10 || r.Delivered < int64(r.Hosts)*r.Missing {
			t.Errorf("%s %d hosts %d MB: missing %d, delivered %d", r.Mode, r.Hosts, r.Size/MB, r.Missing, r.Delivered)
		}
		// Every run starts with empty node caches: the bastion uploads
		// the binary to at most three hosts (at least one), the others
		// fetch it from those; the sshd port carries those uploads and a
		// few kB per host besides.
		if r.NodeFromCache != 0 || r.NodeFromBastion < 1 || r.NodeFromBastion > 3 || r.NodeFromBastion+r.NodeFromPeers != r.Hosts {
			t.Errorf("%s %d hosts: node binary from bastion %d, peers %d, cache %d", r.Mode, r.Hosts, r.NodeFromBastion, r.NodeFromPeers, r.NodeFromCache)
		}
		if r.NodeUpload < int64(r.NodeFromBastion)*MB || r.Flows.SSHOut < r.NodeUpload || r.Flows.SSHOut > r.NodeUpload*11/10+int64(r.Hosts)*100_000 {
			t.Errorf("%s %d hosts: %d bytes on the bastion's sshd link for %d bytes of node binary uploads", r.Mode, r.Hosts, r.Flows.SSHOut, r.NodeUpload)
		}
		if r.SetupMax < r.Setup {
			t.Errorf("%s %d hosts: setup %v, max %v", r.Mode, r.Hosts, r.Setup, r.SetupMax)
		}
		if r.ProcCPU.Layercast <= 0 || r.ProcCPU.Docker <= 0 || r.ProcCPU.SSHD <= 0 {
			t.Errorf("%s %d hosts: CPU by kind %+v", r.Mode, r.Hosts, r.ProcCPU)
		}
		// The machine's busy time holds every kind once, the kernel's
		// threads too, and what was stolen from it.
		if r.Machine.Busy <= 0 || r.ProcCPU.Kernel <= 0 || r.ProcCPU.excessOver(r.Machine) > 0 {
			t.Errorf("%s %d hosts: machine %+v, by kind %+v (%.1f CPU-s by kind)", r.Mode, r.Hosts, r.Machine, r.ProcCPU, r.ProcCPU.total())
		}
		if r.Mode == ModeP2P && r.ProcCPU.Node <= 0 {
			t.Errorf("P2P run at %d hosts: no node CPU", r.Hosts)
		}
		if r.Mode == ModeRegistry && r.ProcCPU.Registry <= 0 {
			t.Errorf("registry run at %d hosts: no registry CPU", r.Hosts)
		}
		// Every run keeps its events and layercast's log.
		run := runName(r.Mode, r.Hosts, r.Size)
		for _, f := range []string{run + ".jsonl", run + ".log"} {
			if _, err := os.Stat(filepath.Join(out, "events", f)); err != nil {
				t.Errorf("run %s: %v", run, err)
			}
		}
	}
	for _, name := range []string{CSVFile, MarkdownFile, Fig2File, Fig3File} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v, %d bytes", name, err, len(b))
		}
	}
	f, err := os.Open(filepath.Join(out, CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	back, err := ReadCSV(f)
	if err != nil || len(back) != len(rs) {
		t.Errorf("csv holds %d runs (%v), want %d", len(back), err, len(rs))
	}
	md, _ := os.ReadFile(filepath.Join(out, MarkdownFile))
	if !strings.Contains(string(md), "| 3 | 20 |") {
		t.Errorf("tables lack the 3-host 20 MB row:\n%s", md)
	}
	if _, err := testbed.Open(cfg.LabName); err == nil {
		t.Error("the bench left its lab up")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestBench_SeededSplitRunTakesTheNodeFromCacheInTwoJobs runs one P2P run
// of 4 hosts as two jobs over two halves, with the node caches seeded: every
// host takes the node binary from its cache, each host is in exactly one
// of the two jobs, the jobs ran at once, and every host has the image.
func TestBench_SeededSplitRunTakesTheNodeFromCacheInTwoJobs(t *testing.T) {
	bin := labBin(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const size = 10 * MB
	var lookedAt int
	cfg := Config{
		Bin: bin, Sizes: []int64{size}, Hosts: []int{4}, Modes: []string{ModeP2P}, NoSingle: true,
		Rate: "200mbit", Layers: 2, SeedNodeCache: true, Split: 2,
		Out: out, Ephemeral: true, LabName: fmt.Sprintf("t-bench-split-%d", os.Getpid()%10000),
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		afterRun: func(ctx context.Context, lab *testbed.Lab, rows []Result) {
			lookedAt++
			for _, h := range lab.Hosts()[:4] {
				if _, err := lab.Exec(ctx, h, "docker", "image", "inspect", imageTag(size)); err != nil {
					t.Errorf("%s lacks the image: %v", h, err)
				}
				// The seeded cache as a job leaves it: dir 0700, binary
				// 0755, its compressed twin 0644, its stamp 0600, all the
				// login user's.
				st, err := lab.Exec(ctx, h, "sh", "-c", `d=/root/.cache/layercast; stat -c '%a %U' "$d" "$d"/layercast-node-* | sort | uniq -c`)
				t.Logf("%s node cache: %s", h, st)
				if want := "1 600 root 1 644 root 1 700 root 1 755 root"; err != nil || strings.Join(strings.Fields(string(st)), " ") != want {
					t.Errorf("%s node cache modes %q (%v), want %q", h, st, err, want)
				}
			}
		},
	}
	rs, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if lookedAt != 1 {
		t.Errorf("looked at the lab after %d runs, want 1", lookedAt)
	}
	// The whole run's row, then one per job.
	if len(rs) != 3 || !rs[0].Whole() || rs[1].Job != 1 || rs[2].Job != 2 {
		t.Fatalf("%d rows %+v, want the whole run and 2 jobs", len(rs), rs)
	}
	whole := rs[0]
	if whole.Split != 2 || whole.Hosts != 4 || whole.Failed > 0 || whole.NodeFromCache != 4 || whole.NodeFromBastion+whole.NodeFromPeers != 0 {
		t.Errorf("whole run: %+v", whole)
	}
	if whole.Propagation != max(rs[1].Propagation, rs[2].Propagation) || whole.BastionEgress != rs[1].BastionEgress+rs[2].BastionEgress {
		t.Errorf("whole run time %v, egress %d; jobs %v, %v, egress %d, %d", whole.Propagation, whole.BastionEgress,
			rs[1].Propagation, rs[2].Propagation, rs[1].BastionEgress, rs[2].BastionEgress)
	}
	seen := map[string]int{}
	var reports []*orchestrator.Report
	for _, r := range rs[1:] {
		if r.Hosts != 2 || r.NodeFromCache != 2 || r.Failed > 0 || r.JobID == "" {
			t.Errorf("job %d: %+v", r.Job, r)
		}
		name := jobName(runName(ModeP2P, 4, size), r.Job)
		if _, err := os.Stat(filepath.Join(out, "events", name+".log")); err != nil {
			t.Error(err)
		}
		f, err := os.Open(filepath.Join(out, "events", name+".jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		tl, err := readEvents(f, nil)
		f.Close()
		if err != nil {
			t.Fatalf("job %d: %v", r.Job, err)
		}
		reports = append(reports, tl.report)
		for _, h := range tl.report.Hosts {
			seen[h.Host]++
		}
	}
	if len(seen) != 4 {
		t.Errorf("hosts in the jobs: %v, want 4", seen)
	}
	for h, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d jobs", h, n)
		}
	}
	// At once: each job started before the other ended.
	a, b := reports[0], reports[1]
	if a.Started.After(b.Started.Add(b.Duration)) || b.Started.After(a.Started.Add(a.Duration)) {
		t.Errorf("jobs ran one after the other: %v+%v and %v+%v", a.Started, a.Duration, b.Started, b.Duration)
	}
	f, err := os.Open(filepath.Join(out, CSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if back, err := ReadCSV(f); err != nil || len(back) != 3 || back[2].Job != 2 || back[0].Split != 2 {
		t.Errorf("csv: %+v, %v", back, err)
	}
	if _, err := testbed.Open(cfg.LabName); err == nil {
		t.Error("the bench left its lab up")
	}
}

// labBin skips a lab test in -short runs and returns the layercast
// binary under test (testbed.LayercastBin).
func labBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test")
	}
	return testbed.LayercastBin(t)
}

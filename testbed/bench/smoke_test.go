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

	"github.com/layercast/layercast/testbed"
)

// TestBench_SmokeRunFinishesEveryRunAndWritesEveryOutput runs the bench
// small (2 sizes × 2 cluster sizes, both modes) to keep it working; it
// checks that every run finished and the outputs exist, not speed.
func TestBench_SmokeRunFinishesEveryRunAndWritesEveryOutput(t *testing.T) {
	testbed.RequireRoot(t)
	if testing.Short() {
		t.Skip("lab test")
	}
	bin := os.Getenv("LAYERCAST_BIN")
	if bin == "" {
		if os.Getenv(testbed.RequiredEnv) == "1" {
			t.Fatal("LAYERCAST_BIN is not set; run the tests through `make test`")
		}
		t.Skip("LAYERCAST_BIN is not set; `make test` builds layercast and sets it")
	}
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
		if r.NodeUpload < int64(r.NodeFromBastion)*MB || r.NodeBinLink < r.NodeUpload || r.NodeBinLink > r.NodeUpload*11/10+int64(r.Hosts)*100_000 {
			t.Errorf("%s %d hosts: %d bytes on the bastion's sshd link for %d bytes of node binary uploads", r.Mode, r.Hosts, r.NodeBinLink, r.NodeUpload)
		}
		if r.SetupMax < r.Setup {
			t.Errorf("%s %d hosts: setup %v, max %v", r.Mode, r.Hosts, r.Setup, r.SetupMax)
		}
		if r.ProcCPU.Layercast <= 0 || r.ProcCPU.Docker <= 0 || r.ProcCPU.SSHD <= 0 {
			t.Errorf("%s %d hosts: CPU by kind %+v", r.Mode, r.Hosts, r.ProcCPU)
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

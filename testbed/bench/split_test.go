package bench

import (
	"bytes"
	"encoding/csv"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
)

func TestSplitHosts_CutsInOrderIntoDisjointEqualGroups(t *testing.T) {
	hosts := []string{"h01", "h02", "h03", "h04", "h05", "h06"}
	groups, err := splitHosts(hosts, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"h01", "h02"}, {"h03", "h04"}, {"h05", "h06"}}
	if !slices.EqualFunc(groups, want, slices.Equal) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	// A group cannot grow into the next one's hosts.
	groups[0] = append(groups[0], "x")
	if hosts[2] != "h03" {
		t.Errorf("appending to a group overwrote the hosts: %v", hosts)
	}
	if g, err := splitHosts(hosts, 1); err != nil || len(g) != 1 || !slices.Equal(g[0], hosts) {
		t.Errorf("one group: %v, %v", g, err)
	}
	for _, n := range []int{0, 4, 7} {
		if _, err := splitHosts(hosts, n); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("6 hosts in %d groups: %v, want ErrInvalidConfig", n, err)
		}
	}
}

func TestConfig_SplitMustDivideEveryClusterSizeAndSeedingExcludesWarm(t *testing.T) {
	base := Config{Bin: "/bin/sh", Sizes: []int64{10 * MB}, Hosts: []int{1, 4, 8}, Modes: []string{ModeP2P}}
	c := base
	c.Split = 2
	got, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	// The single-host run stays one job; 4 and 8 hosts run as 2 jobs.
	var splits []int
	for _, p := range got.plan() {
		splits = append(splits, p.split)
	}
	if !slices.Equal(splits, []int{1, 2, 2}) {
		t.Errorf("splits %v, want 1, 2, 2", splits)
	}
	c.Split = 3
	if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("4 hosts split 3: %v, want ErrInvalidConfig", err)
	}
	if got, err := base.withDefaults(); err != nil || got.Split != 1 {
		t.Errorf("default split %d, %v; want 1", got.Split, err)
	}
	c = base
	c.SeedNodeCache, c.WarmNodeCache = true, true
	if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("seed and warm: %v, want ErrInvalidConfig", err)
	}
}

func TestConfig_MaxRateReachesLayercastsCommandLine(t *testing.T) {
	c := Config{Bin: "/bin/true", Sizes: []int64{MB}, Hosts: []int{2}, MaxRate: "fast"}
	if _, err := c.withDefaults(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "max rate") {
		t.Errorf("max rate %q: %v, want ErrInvalidConfig naming it", c.MaxRate, err)
	}
	args := runArgs("lc", ModeP2P, "inv.yaml", "/cache", "img:1", []string{"h01", "h02"}, runFlags{maxRate: "900kbit", connectTimeout: time.Minute})
	if i := slices.Index(args, "--max-rate"); i < 0 || args[i+1] != "900kbit" || args[len(args)-1] != "img:1" {
		t.Errorf("command line %q: want --max-rate 900kbit before the image", args)
	}
	if i := slices.Index(args, "--connect-timeout"); i < 0 || args[i+1] != "1m0s" {
		t.Errorf("command line %q: want --connect-timeout 1m0s", args)
	}
	if args := runArgs("lc", ModeP2P, "inv.yaml", "/cache", "img:1", []string{"h01"}, runFlags{}); slices.Contains(args, "--max-rate") || slices.Contains(args, "--connect-timeout") {
		t.Errorf("command line %q: --max-rate or --connect-timeout without one asked", args)
	}
}

// splitTimeline is one job of a split run: hosts done after the given
// seconds from start, each having downloaded both layers.
func splitTimeline(id string, start time.Time, egress int64, hosts map[string]float64) *timeline {
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	tl := &timeline{
		started: start,
		job:     &orchestrator.JobInfo{ID: id, Layers: []orchestrator.LayerInfo{{Digest: "a", Size: 100}, {Digest: "b", Size: 50}}},
		states:  map[string]map[orchestrator.HostState]time.Time{},
		layers:  map[string][]orchestrator.LayerProgress{},
		report: &orchestrator.Report{JobID: id, Egress: egress, Started: start,
			NodeBinary: orchestrator.NodeBinaryReport{FromCache: len(hosts)},
			Bastion:    orchestrator.BastionUse{PeakRSS: 60 * MB, PeakGoroutines: 100}},
	}
	var longest float64
	for _, h := range slices.Sorted(func(yield func(string) bool) {
		for h := range hosts {
			if !yield(h) {
				return
			}
		}
	}) {
		done := hosts[h]
		longest = max(longest, done)
		tl.states[h] = map[orchestrator.HostState]time.Time{
			orchestrator.HostDownloading: at(1), orchestrator.HostImporting: at(done - 1), orchestrator.HostDone: at(done),
		}
		tl.layers[h] = []orchestrator.LayerProgress{{Digest: "a", Total: 100}, {Digest: "b", Total: 50}}
		tl.report.Hosts = append(tl.report.Hosts, orchestrator.HostResult{Host: h, State: orchestrator.HostDone, Duration: at(done).Sub(start)})
	}
	tl.report.Duration = time.Duration((longest + 0.5) * float64(time.Second))
	return tl
}

func TestCombine_WholeRunTakesTheSlowestJobAndSumsOverEveryHost(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tls := []*timeline{
		splitTimeline("j1", t0, 160, map[string]float64{"h01": 10, "h02": 12}),
		splitTimeline("j2", t0.Add(200*time.Millisecond), 170, map[string]float64{"h03": 20, "h04": 30}),
	}
	var jobs []Result
	for k, tl := range tls {
		r := Result{Mode: ModeP2P, Hosts: 2, Size: 150, RateBits: 1e6, Split: 2, Job: k + 1, ProcCPU: ProcCPU{Layercast: float64(k + 1)}}
		tl.fill(&r)
		jobs = append(jobs, r)
	}
	if jobs[0].Propagation != 12*time.Second || jobs[1].Propagation != 30*time.Second {
		t.Fatalf("job times %v, %v", jobs[0].Propagation, jobs[1].Propagation)
	}
	r := combine(jobs, tls)
	if !r.Whole() || r.Split != 2 || r.Hosts != 4 || r.Mode != ModeP2P || r.Size != 150 || r.RateBits != 1e6 {
		t.Errorf("whole run %+v", r)
	}
	if r.Propagation != 30*time.Second || r.Max != 30*time.Second || r.Failed != 0 {
		t.Errorf("time %v, max %v, failed %d; want the slowest job's 30 s", r.Propagation, r.Max, r.Failed)
	}
	// Per-host times over all four hosts, each from its own job's start:
	// 10, 12, 20, 30 s; nearest-rank p50 is 12 s.
	if r.P50 != 12*time.Second || r.P90 != 30*time.Second {
		t.Errorf("p50 %v p90 %v, want 12 s and 30 s", r.P50, r.P90)
	}
	// Egress over the whole run ÷ the layers some host lacked (both jobs
	// sent the same image): 330 ÷ 150.
	if r.BastionEgress != 330 || r.Missing != 150 || r.Delivered != 600 || !near(r.EgressRatio(), 2.2) {
		t.Errorf("egress %d, missing %d, delivered %d", r.BastionEgress, r.Missing, r.Delivered)
	}
	if r.NodeFromCache != 4 || r.BastionRSSPeak != 120*MB || r.BastionGoroutinesPeak != 200 || r.ProcCPU.Layercast != 3 {
		t.Errorf("node from cache %d, rss %d, goroutines %d, layercast CPU %v", r.NodeFromCache, r.BastionRSSPeak, r.BastionGoroutinesPeak, r.ProcCPU.Layercast)
	}
	if r.JobID != "j1+j2" {
		t.Errorf("job id %q", r.JobID)
	}
	// Setup from the first job's start: h03 and h04 began 1.2 s after it.
	if r.Setup != time.Second || r.SetupMax != 1200*time.Millisecond {
		t.Errorf("setup %v max %v", r.Setup, r.SetupMax)
	}
	if err := checkSeeded(r); err != nil {
		t.Error(err)
	}
	r.NodeFromCache = 3
	if err := checkSeeded(r); !errors.Is(err, ErrSeedMissed) {
		t.Errorf("3 of 4 hosts from cache: %v, want ErrSeedMissed", err)
	}
}

func TestCSV_SplitRunsRoundTripAndOldFilesHoldOneJobRuns(t *testing.T) {
	in := Results{
		{Mode: ModeP2P, Hosts: 4, Size: 10 * MB, RateBits: 1e6, Propagation: 30 * time.Second, Split: 2, JobID: "a+b"},
		{Mode: ModeP2P, Hosts: 2, Size: 10 * MB, RateBits: 1e6, Propagation: 12 * time.Second, Split: 2, Job: 1, JobID: "a"},
		{Mode: ModeP2P, Hosts: 2, Size: 10 * MB, RateBits: 1e6, Propagation: 30 * time.Second, Split: 2, Job: 2, JobID: "b"},
		{Mode: ModeP2P, Hosts: 1, Size: 10 * MB, RateBits: 1e6, Propagation: 10 * time.Second, Split: 1},
	}
	var buf bytes.Buffer
	if err := in.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(strings.NewReader(buf.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	split, job := slices.Index(recs[0], "split"), slices.Index(recs[0], "job")
	var got []string
	for _, rec := range recs[1:] {
		got = append(got, rec[split]+" "+rec[job])
	}
	if want := []string{"2 all", "2 1", "2 2", "1 all"}; split < 0 || job < 0 || !slices.Equal(got, want) {
		t.Errorf("split and job columns %v, want %v; csv:\n%s", got, want, buf.String())
	}
	out, err := ReadCSV(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(out, in) {
		t.Errorf("read back %+v\nwant %+v", out, in)
	}
	// The whole runs are what the tables and figures compare: a job's
	// 2 hosts are no 2-host run.
	if got := out.HostCounts(); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("cluster sizes %v, want 1 and 4", got)
	}
	if r, ok := out.Find(ModeP2P, 4, 10*MB); !ok || r.JobID != "a+b" || out.Scaling(r) != 3 {
		t.Errorf("4-host run %+v %v, scaling %v", r, ok, out.Scaling(r))
	}
	if _, ok := out.Find(ModeP2P, 2, 10*MB); ok {
		t.Error("a job of a split run was found as a 2-host run")
	}
	var md bytes.Buffer
	out.Markdown(&md, Setup{Rate: "1 Mbit/s", Layers: 2})
	for _, want := range []string{"| p2p, 2 jobs | 4 |", "| p2p, job 2 of 2 | 2 |", "| p2p | 1 |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
	// A file from before the split and job columns: runs of one job.
	n := slices.Index(csvHeader, "split")
	cut := func(rec []string) string { return strings.Join(rec[:n], ",") }
	old, err := ReadCSV(strings.NewReader(cut(recs[0]) + "\n" + cut(recs[4]) + "\n"))
	if err != nil || len(old) != 1 || old[0].Split != 1 || old[0].Job != 0 || !old[0].Whole() {
		t.Errorf("old file: %+v, %v", old, err)
	}
}

func TestCarriesNode_MatchesLayercastVersionsSHA256Prefix(t *testing.T) {
	out := "layercast v1 (go1.26)\n" +
		"node binary linux/amd64: v1, 21.5 MB (7.9 MB compressed), sha256 6c0c089a1369c49b\n" +
		"node binary linux/arm64: not built in; built on first use with the local Go toolchain from x\n"
	sha := "6c0c089a1369c49b" + strings.Repeat("0", 48)
	if !carriesNode(out, "amd64", sha) {
		t.Error("the same binary is not recognised")
	}
	if carriesNode(out, "amd64", strings.Repeat("1", 64)) || carriesNode(out, "arm64", sha) || carriesNode("", "amd64", sha) {
		t.Error("another binary, or none, is recognised")
	}
}

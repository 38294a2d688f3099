package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/seed"
)

// plainPrinter writes one line per state change and a periodic summary line,
// never cursor control, then the result table.
type plainPrinter struct {
	mu       sync.Mutex
	w        io.Writer
	every    time.Duration
	last     time.Time
	job      *orchestrator.JobInfo
	states   map[string]orchestrator.HostState
	progress map[string]*orchestrator.HostProgress
	seeder   orchestrator.SeederStats
}

func newPlainPrinter(w io.Writer, every time.Duration) *plainPrinter {
	return &plainPrinter{w: w, every: every, states: map[string]orchestrator.HostState{}, progress: map[string]*orchestrator.HostProgress{}}
}

func (p *plainPrinter) Emit(e orchestrator.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := e.Time.Format("15:04:05")
	switch e.Kind {
	case orchestrator.EventJobStarted:
		p.job = e.Job
		from := ""
		if e.Job.Source != "" {
			from = " from the " + e.Job.Source
		}
		fmt.Fprintf(p.w, "%s job %s: %s%s (%s, %d layers, mode %s) to %d hosts\n", ts, e.Job.ID, e.Job.Image, from, textfmt.Bytes(e.Job.Size), len(e.Job.Layers), e.Job.Mode, len(e.Job.Hosts))
		if len(e.Job.Platforms) > 1 {
			for _, pi := range e.Job.Platforms {
				fmt.Fprintf(p.w, "%s   %s: %s (%s)\n", ts, pi.Platform, pi.ImageID, textfmt.Bytes(pi.Size))
			}
		}
		for _, l := range e.Job.Ignored {
			fmt.Fprintf(p.w, "%s inventory: ignored: %s\n", ts, textfmt.OneLine(l))
		}
	case orchestrator.EventStep:
		fmt.Fprintf(p.w, "%s %s\n", ts, textfmt.OneLine(e.Message))
	case orchestrator.EventHostState:
		p.states[e.Host] = e.State
		if e.Message != "" {
			fmt.Fprintf(p.w, "%s %-16s %s: %s\n", ts, e.Host, e.State, textfmt.OneLine(e.Message))
		} else {
			fmt.Fprintf(p.w, "%s %-16s %s\n", ts, e.Host, e.State)
		}
	case orchestrator.EventHostProgress:
		p.progress[e.Host] = e.Progress
		if e.Time.Sub(p.last) >= p.every {
			p.last = e.Time
			p.summaryLine(ts)
		}
	case orchestrator.EventSeeder:
		p.seeder = *e.Seeder
	case orchestrator.EventTeardown:
		who := e.Host
		if who == "" {
			who = "bastion"
		}
		fmt.Fprintf(p.w, "%s %-16s teardown: %s\n", ts, who, textfmt.OneLine(e.Message))
	case orchestrator.EventJobDone:
		writeTable(p.w, e.Report)
	}
}

func (p *plainPrinter) summaryLine(ts string) {
	var done, total int64
	var rate float64
	finished := 0
	for h, pr := range p.progress {
		done += pr.Done
		total += pr.Total
		if p.states[h] == orchestrator.HostDownloading {
			rate += pr.Rate
		}
	}
	for _, s := range p.states {
		if s.Terminal() {
			finished++
		}
	}
	pct := 0.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	fmt.Fprintf(p.w, "%s progress %5.1f%% · %d/%d hosts finished · %s/s · bastion sent %s\n",
		ts, pct, finished, len(p.states), textfmt.Bytes(int64(rate)), textfmt.Bytes(p.seeder.Uploaded))
}

// writeTable prints the final per-host table.
func writeTable(w io.Writer, r *orchestrator.Report) {
	if r == nil {
		return
	}
	hosts := append([]orchestrator.HostResult(nil), r.Hosts...)
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Host < hosts[j].Host })
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tRESULT\tTIME\tFROM PEERS\tFROM BASTION\tLAYERS SKIPPED\tERROR")
	for _, h := range hosts {
		result := string(h.State)
		if h.Unverified {
			result += " (unverified)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", h.Host, result, h.Duration.Round(100*time.Millisecond),
			textfmt.Bytes(h.FromPeers), textfmt.Bytes(h.FromSeeder), h.LayersSkipped, textfmt.OneLine(h.Error))
	}
	tw.Flush()
	failed := r.Failed()
	fmt.Fprintf(w, "\n%s to %d/%d hosts in %s · %s\n",
		r.Image, len(r.Hosts)-len(failed), len(r.Hosts), r.Duration.Round(100*time.Millisecond), traffic(r))
	if len(failed) > 0 {
		fmt.Fprintf(w, "failed: %s (rerun them with --hosts %s)\n", strings.Join(failed, ", "), strings.Join(failed, ","))
	}
	if r.Unverified != "" {
		fmt.Fprintf(w, "not verified: %s\n", textfmt.OneLine(r.Unverified))
	}
}

// traffic says what the job cost the bastion's link: the layers (against
// what the hosts lacked, or the image when nothing is known of that), the
// node binary and the layers' torrents.
func traffic(r *orchestrator.Report) string {
	of, base := "the layers the hosts lacked", r.Missing
	if base == 0 {
		of, base = "image size", r.Size
	}
	out := fmt.Sprintf("bastion sent %s (%.2f× %s%s)", textfmt.Bytes(r.Egress), ratio(r.Egress, base), of, sentAgain(r.Resent))
	if nb := r.NodeBinary; nb.FromBastion+nb.FromPeers+nb.FromCache > 0 {
		out += fmt.Sprintf(" · node binary: %d from the bastion (%s), %d from other hosts, %d cached", nb.FromBastion, textfmt.Bytes(nb.BastionBytes), nb.FromPeers, nb.FromCache)
	}
	if tr := r.Torrents; tr.FromBastion+tr.FromPeers > 0 {
		out += fmt.Sprintf(" · torrents: %d from the bastion (%s), %d from other hosts", tr.FromBastion, textfmt.Bytes(tr.BastionBytes), tr.FromPeers)
	}
	return out
}

// sentAgain says what the seeder sent more than once and why, or nothing.
func sentAgain(r seed.Resends) string {
	if r.Total() == 0 {
		return ""
	}
	var why []string
	for _, c := range []struct {
		n    int64
		what string
	}{
		{r.Rescue, "to hosts their peers did not serve"},
		{r.Stuck, "of pieces not passed on"},
		{r.IdleOwner, "of pieces a host went quiet on"},
		{r.OwnerLeft, "of pieces a host hung up on"},
		{r.Other, "asked for again"},
	} {
		if c.n > 0 {
			why = append(why, textfmt.Bytes(c.n)+" "+c.what)
		}
	}
	return "; " + textfmt.Bytes(r.Total()) + " of it again: " + strings.Join(why, ", ")
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// jsonPrinter writes every event as one JSON line; progress events at most
// once per interval per host so CI logs stay readable.
type jsonPrinter struct {
	mu    sync.Mutex
	enc   *json.Encoder
	every time.Duration
	last  map[string]time.Time
}

func newJSONPrinter(w io.Writer, every time.Duration) *jsonPrinter {
	return &jsonPrinter{enc: json.NewEncoder(w), every: every, last: map[string]time.Time{}}
}

func (p *jsonPrinter) Emit(e orchestrator.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Kind == orchestrator.EventHostProgress || e.Kind == orchestrator.EventSeeder {
		key := string(e.Kind) + "/" + e.Host
		if e.Time.Sub(p.last[key]) < p.every {
			return
		}
		p.last[key] = e.Time
	}
	_ = p.enc.Encode(e)
}

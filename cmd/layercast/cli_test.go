package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/nodeassets"
)

// execute runs the command tree with args and returns stdout, stderr and
// the error Execute returned.
func execute(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// commands lists every command an operator can call, hidden ones and
// cobra's help left out.
func commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" {
			continue
		}
		out = append(out, commands(c)...)
	}
	return out
}

func TestHelp_EveryCommandShowsExamples(t *testing.T) {
	root := newRootCmd()
	var names []string
	for _, c := range commands(root) {
		path := strings.Fields(c.CommandPath())[1:]
		names = append(names, c.CommandPath())
		out, _, err := execute(t, append(path, "--help")...)
		if err != nil {
			t.Errorf("%s --help: %v", c.CommandPath(), err)
			continue
		}
		if !strings.Contains(out, "Examples:\n") || !strings.Contains(out, "layercast") {
			t.Errorf("%s --help shows no examples:\n%s", c.CommandPath(), out)
		}
		if strings.ContainsRune(out, 0x1b) {
			t.Errorf("%s --help writes escape sequences", c.CommandPath())
		}
	}
	for _, want := range []string{"layercast", "layercast run", "layercast plan", "layercast version", "layercast completion", "layercast completion bash", "layercast completion zsh", "layercast completion fish"} {
		if !strings.Contains("\n"+strings.Join(names, "\n")+"\n", "\n"+want+"\n") {
			t.Errorf("command %q missing from the tree %q", want, names)
		}
	}
}

func TestVersion_FlagPrintsWhatTheCommandPrints(t *testing.T) {
	cmd, _, err := execute(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	flag, _, err := execute(t, "--version")
	if err != nil || flag != cmd {
		t.Errorf("layercast --version: %v\n%s\nwant what layercast version prints:\n%s", err, flag, cmd)
	}
}

func TestVersion_NamesTheNodeBinariesForBothArchitectures(t *testing.T) {
	out, _, err := execute(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "layercast ") {
		t.Fatalf("version output:\n%s", out)
	}
	embedded := nodeassets.Embedded()
	for i, arch := range []string{"amd64", "arm64"} {
		line := lines[i+1]
		if !strings.HasPrefix(line, "node binary linux/"+arch+": ") {
			t.Errorf("line %q does not name the linux/%s node binary", line, arch)
			continue
		}
		if b, err := embedded.Get(arch); err == nil {
			if !strings.Contains(line, b.Version) || !strings.Contains(line, b.SHA256[:16]) {
				t.Errorf("line %q lacks the binary's version %q and sha256", line, b.Version)
			}
		} else if !strings.Contains(line, "built on first use") {
			t.Errorf("no linux/%s binary built in, and %q does not say what happens instead", arch, line)
		}
	}
}

// hostNoise is a failure reason as a host's stderr may word it.
const hostNoise = "docker load: \x1b[31merror\x1b[0m\r\x1b[2K\x1b[1Aunpacking\nlayer sha256:abc\tfailed\a"

// jobEvents is a job's event stream with text from hosts that holds colour
// codes and cursor movement, as remote stderr can.
func jobEvents() []orchestrator.Event {
	t0 := time.Date(2025, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	nasty := hostNoise
	rep := &orchestrator.Report{JobID: "j1", Image: "app:v1", Mode: "p2p", Size: 300e6, Started: t0, Duration: 42 * time.Second, Egress: 310e6,
		Hosts: []orchestrator.HostResult{
			{Host: "h01", State: orchestrator.HostDone, FromPeers: 200e6, FromSeeder: 100e6},
			{Host: "h02", State: orchestrator.HostFailed, Error: nasty},
		}}
	ev := []orchestrator.Event{
		{Time: at(0), Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{ID: "j1", Image: "app:v1", Mode: "p2p", Size: 300e6, Hosts: []string{"h01", "h02"},
			Layers: []orchestrator.LayerInfo{{Digest: "sha256:aa", Size: 300e6}}}},
		{Time: at(0), Kind: orchestrator.EventStep, Message: "serve layers\x1b[K"},
	}
	for i, s := range []orchestrator.HostState{orchestrator.HostConnecting, orchestrator.HostUploading, orchestrator.HostDownloading} {
		for _, h := range []string{"h01", "h02"} {
			ev = append(ev, orchestrator.Event{Time: at(i + 1), Kind: orchestrator.EventHostState, Host: h, State: s})
		}
	}
	for s := 4; s < 40; s++ {
		ev = append(ev,
			orchestrator.Event{Time: at(s), Kind: orchestrator.EventHostProgress, Host: "h01",
				Progress: &orchestrator.HostProgress{Done: int64(s) * 7e6, Total: 300e6, Needed: 300e6, Rate: 7e6, Peers: 1}},
			orchestrator.Event{Time: at(s), Kind: orchestrator.EventSeeder, Seeder: &orchestrator.SeederStats{Uploaded: int64(s) * 5e6}},
			orchestrator.Event{Time: at(s), Kind: orchestrator.EventHostLog, Host: "h02", Message: nasty})
	}
	ev = append(ev,
		orchestrator.Event{Time: at(40), Kind: orchestrator.EventHostState, Host: "h02", State: orchestrator.HostFailed, Message: nasty},
		orchestrator.Event{Time: at(41), Kind: orchestrator.EventHostState, Host: "h01", State: orchestrator.HostDone},
		orchestrator.Event{Time: at(42), Kind: orchestrator.EventTeardown, Host: "h02", Message: nasty},
		orchestrator.Event{Time: at(42), Kind: orchestrator.EventTeardown, Message: "tracker and seeder stopped"},
		orchestrator.Event{Time: at(42), Kind: orchestrator.EventJobDone, Report: rep},
	)
	return ev
}

// TestOutput_WithoutATerminalNeverUsesCursorControl feeds a whole job,
// with escape codes in what the hosts said, through every writer that
// serves a pipe or a file: plain lines, JSON lines, the Markdown summary
// and the plan table.
func TestOutput_WithoutATerminalNeverUsesCursorControl(t *testing.T) {
	events := jobEvents()
	var plain, js bytes.Buffer
	pp, jp := newPlainPrinter(&plain, time.Second), newJSONPrinter(&js, time.Second)
	for _, e := range events {
		pp.Emit(e)
		jp.Emit(e)
	}
	var md bytes.Buffer
	writeMarkdown(&md, events[len(events)-1].Report)
	var plan bytes.Buffer
	writePlan(&plan, &orchestrator.Plan{Image: "app:v1", ImageID: "sha256:11", Size: 300e6, Layers: 1, Mode: "p2p",
		Hosts: []orchestrator.HostPlan{{Host: "h01", Reachable: true, Arch: "amd64", Docker: "direct", Needs: 300e6},
			{Host: "h02", Error: "ssh: \x1b[31mconnection refused\x1b[0m\r\n"}}, Bytes: 300e6})

	for name, out := range map[string][]byte{"plain": plain.Bytes(), "json": js.Bytes(), "markdown": md.Bytes(), "plan": plan.Bytes()} {
		if len(out) == 0 {
			t.Errorf("%s: no output", name)
		}
		if i := bytes.IndexByte(out, 0x1b); i >= 0 {
			t.Errorf("%s output holds ESC at byte %d: %q", name, i, out[max(0, i-20):min(len(out), i+20)])
		}
		if bytes.ContainsAny(out, "\r\a\b") {
			t.Errorf("%s output holds a carriage return, bell or backspace", name)
		}
	}
	// Progress was printed, and the failed host's reason kept its words.
	if !strings.Contains(plain.String(), "progress") || !strings.Contains(plain.String(), "h02") ||
		!strings.Contains(plain.String(), "error") || !strings.Contains(plain.String(), "unpacking layer sha256:abc failed") {
		t.Errorf("plain output lost content:\n%s", plain.String())
	}
	// The JSON lines still carry the host's text exactly, escaped.
	var failed orchestrator.Event
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var e orchestrator.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("json line %q: %v", line, err)
		}
		if e.Kind == orchestrator.EventHostState && e.State == orchestrator.HostFailed {
			failed = e
		}
	}
	if failed.Message != hostNoise {
		t.Errorf("json failure message %q, want the host's text unchanged", failed.Message)
	}
}

// TestConsole_WithoutATerminalSaysUseRun: the bare command never starts the
// console (and its cursor control) on a pipe.
func TestConsole_WithoutATerminalSaysUseRun(t *testing.T) {
	out, _, err := execute(t)
	if err == nil {
		t.Fatal("layercast without a terminal started the console")
	}
	var ce *exitCodeError
	if !errors.As(err, &ce) || ce.code != exitUsage || !strings.Contains(err.Error(), "layercast run") {
		t.Errorf("err %v, want exit 2 pointing at `layercast run`", err)
	}
	if strings.ContainsRune(out, 0x1b) {
		t.Errorf("stdout holds escape sequences: %q", out)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

// TestOutput_HostileHostsRenderHarmless runs a job whose hosts put escape
// sequences (OSC, CSI, C1, bidi) and Markdown into every field they fill,
// through the real engine, into the plain printer, the JSON printer, the
// JSON report and the Markdown summary: none of it acts, all of it shows.
func TestOutput_HostileHostsRenderHarmless(t *testing.T) {
	hj, err := orchestrator.NewHostileJob(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var plain, js bytes.Buffer
	pp, jp := newPlainPrinter(&plain, time.Millisecond), newJSONPrinter(&js, time.Millisecond)
	rep, err := hj.Engine.Run(context.Background(), hj.Options, orchestrator.SinkFunc(func(e orchestrator.Event) {
		pp.Emit(e)
		jp.Emit(e)
	}))
	if err != nil {
		t.Fatal(err)
	}
	report, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	writeMarkdown(&md, rep)

	for name, out := range map[string]string{"plain": plain.String(), "json": js.String(), "report": string(report), "markdown": md.String()} {
		if !textfmt.Harmless(out) {
			t.Errorf("%s output holds controls or bidi characters:\n%q", name, out)
		}
	}
	// Shown, escaped: the operator sees what the hosts sent.
	if !strings.Contains(plain.String(), `\x1b]0;owned\x07`) || !strings.Contains(plain.String(), `\u202eevil`) {
		t.Errorf("plain output does not show the hosts' escapes:\n%s", plain.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(js.String()), "\n") {
		var e orchestrator.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("json line %q: %v", line, err)
		}
		if b, _ := json.Marshal(e); !textfmt.Harmless(string(b)) {
			t.Errorf("json event decodes to text with controls: %q", line)
		}
	}

	// The summary's table keeps its seven cells per row, and nothing of
	// the hosts' text opens an image, a link, HTML or code there.
	unescaped := func(s string, c byte) int {
		n := 0
		for i := 0; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == c {
				n++
			}
		}
		return n
	}
	for _, line := range strings.Split(md.String(), "\n") {
		if !strings.HasPrefix(line, "| ") {
			if strings.Contains(line, "owned") && strings.ContainsAny(line, "<`") && unescaped(line, '<')+unescaped(line, '`') > 0 {
				t.Errorf("summary line lets Markdown through: %q", line)
			}
			continue
		}
		if n := unescaped(line, '|'); n != 8 {
			t.Errorf("summary row has %d cell borders, want 8: %q", n, line)
		}
		for _, c := range []byte{'<', '`', '[', '!', '*', '_'} {
			if unescaped(line, c) > 0 && strings.Contains(line, "owned") {
				t.Errorf("summary row has an unescaped %q: %q", c, line)
			}
		}
	}
	if ok, _ := regexp.MatchString(`\\!\\\[x\\\]\\\(http\\:`, md.String()); !ok {
		t.Errorf("summary does not show the host's Markdown as text:\n%s", md.String())
	}
}

func TestOutput_UnverifiedResultIsSaid(t *testing.T) {
	rep := &orchestrator.Report{JobID: "j1", Image: "reg.example/app:v1", Mode: "registry",
		Unverified: "the bastion has no copy of reg.example/app:v1 to compare with: host h01 holds whatever the registry serves under that name",
		Hosts:      []orchestrator.HostResult{{Host: "h01", State: orchestrator.HostDone, Unverified: true, ImageID: "sha256:ab"}}}
	var plain, md bytes.Buffer
	writeTable(&plain, rep)
	writeMarkdown(&md, rep)
	for name, out := range map[string]string{"table": plain.String(), "markdown": md.String()} {
		if !strings.Contains(strings.ReplaceAll(out, `\`, ""), "no copy of reg.example/app:v1") || !strings.Contains(out, "unverified") && !strings.Contains(out, "not verified") {
			t.Errorf("%s does not say the result is unverified:\n%s", name, out)
		}
	}
}

func TestOutput_IgnoredInventorySettingsAreShown(t *testing.T) {
	ignored := []string{"ansible_python_interpreter: not used by layercast (h01, h02)", "ansible_ssh_common_args: -o StrictHostKeyChecking=no: not used (layercast reaches hosts as ~/.ssh/config says) (h01)"}
	var plain, js, plan bytes.Buffer
	ev := orchestrator.Event{Kind: orchestrator.EventJobStarted, Job: &orchestrator.JobInfo{ID: "j", Image: "app:v1", Hosts: []string{"h01"}, Ignored: ignored}}
	newPlainPrinter(&plain, time.Second).Emit(ev)
	newJSONPrinter(&js, time.Second).Emit(ev)
	writePlan(&plan, &orchestrator.Plan{Image: "app:v1", Ignored: ignored})
	for name, out := range map[string]string{"plain": plain.String(), "json": js.String(), "plan": plan.String()} {
		for _, l := range ignored {
			if !strings.Contains(out, l) {
				t.Errorf("%s output lacks %q:\n%s", name, l, out)
			}
		}
	}
}

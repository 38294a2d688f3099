package orchestrator

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// jsonStrings lists every string in a JSON document.
func jsonStrings(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for k, e := range x {
				out = append(out, k)
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// assertHarmlessJSON checks that b, as bytes and once decoded, holds no
// control, bidi or other invisible character.
func assertHarmlessJSON(t *testing.T, what string, b []byte) {
	t.Helper()
	if !textfmt.Harmless(string(b)) {
		t.Errorf("%s: the JSON holds raw controls or bidi characters: %q", what, b)
	}
	for _, s := range jsonStrings(t, b) {
		if !textfmt.Harmless(s) {
			t.Errorf("%s: decoded string %q holds controls or bidi characters", what, s)
		}
	}
}

func TestEngine_HostTextLeavesTheEngineHarmless(t *testing.T) {
	hj, err := NewHostileJob(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	rep, err := hj.Engine.Run(context.Background(), hj.Options, rec)
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	for _, e := range rec.events {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		assertHarmlessJSON(t, string(e.Kind)+" event", b)
		all.Write(b)
	}
	b, _ := json.Marshal(rep)
	assertHarmlessJSON(t, "report", b)
	// Made visible, not dropped: the operator sees what the host sent.
	for _, want := range []string{`\\x1b]0;owned\\x07`, `\\x9b31m`, `\\u202eevil`, `\\u2066iso\\u2069`} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("events never show %s", want)
		}
	}
	res := map[string]HostResult{}
	for _, h := range rep.Hosts {
		res[h.Host] = h
	}
	if res["h1"].State != HostDone {
		t.Errorf("h1: %+v", res["h1"])
	}
	for _, h := range []string{"h2", "h3", "h4", "h5"} {
		if r := res[h]; r.State != HostFailed || !strings.Contains(r.Error, `\x1b]0;owned`) {
			t.Errorf("%s: %s %q; want failed with the host's words escaped", h, r.State, r.Error)
		}
	}
}

func TestPlan_HostTextIsHarmless(t *testing.T) {
	l := newTestLab(t, "h1")
	c := hostops.NewFakeConn(inventory.Host{Name: "h1"})
	c.Facts.Arch, c.Facts.Machine = Hostile, Hostile
	c.RunFunc = func(context.Context, openssh.Command) ([]byte, error) {
		return nil, &openssh.ExitError{Cmd: "sh", Code: 1, Stderr: Hostile}
	}
	l.dialer.Conns = map[string]*hostops.FakeConn{"h1": c}
	eng, err := NewEngine(l.deps)
	if err != nil {
		t.Fatal(err)
	}
	p, err := eng.Plan(context.Background(), Options{InventoryPath: l.inv, Image: "lab/app:v1"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	assertHarmlessJSON(t, "plan", b)
	if h := p.Hosts[0]; !strings.HasPrefix(h.Arch, `\x1b]0;owned`) || !strings.Contains(h.Error, `\u202eevil`) {
		t.Errorf("plan shows arch %q, error %q; want the host's words escaped", h.Arch, h.Error)
	}
}

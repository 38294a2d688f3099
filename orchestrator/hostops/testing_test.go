package hostops

import (
	"context"
	"errors"
	"testing"

	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/openssh"
)

func TestFakes_ProcessRoundTrip(t *testing.T) {
	d := &FakeDialer{Errs: map[string]error{"bad": openssh.ErrAuthFailed}}
	if _, err := d.Dial(context.Background(), inventory.Host{Name: "bad"}); !errors.Is(err, openssh.ErrAuthFailed) {
		t.Errorf("dial bad: %v", err)
	}
	c, err := d.Dial(context.Background(), inventory.Host{Name: "h"})
	if err != nil {
		t.Fatal(err)
	}
	fc := d.Conn("h")
	fc.StartFunc = func(ctx context.Context, cmd openssh.Command, p *openssh.FakeProcess) {
		b := make([]byte, 4)
		n, _ := p.StdinReader().Read(b)
		p.StdoutWriter().Write(append([]byte("echo:"), b[:n]...))
		p.Exit(nil)
	}
	p, err := c.Start(context.Background(), openssh.Command{Path: "/tmp/layercast-j/node", Become: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Stdin().Write([]byte("spec"))
	out := make([]byte, 9)
	n, _ := p.Stdout().Read(out)
	if string(out[:n]) != "echo:spec" || p.Wait() != nil {
		t.Errorf("got %q", out[:n])
	}
	if calls := fc.Calls(); len(calls) != 1 || calls[0] != "start sudo -n -- /tmp/layercast-j/node" {
		t.Errorf("calls %v", calls)
	}
}

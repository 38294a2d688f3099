package swarm

import (
	"net"
	"testing"
)

// loopbackPeers are the addresses the in-process peers of these tests use:
// an allow list fails closed, so every client names them.
func loopbackPeers() []string { return []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} }

func TestAllowList_FailsClosed(t *testing.T) {
	none, err := newAllowList(nil)
	if err != nil || none == nil {
		t.Fatalf("empty list: %v, %v; want a list that allows nobody", none, err)
	}
	if _, blocked := none.Lookup(net.ParseIP("10.0.0.1")); !blocked {
		t.Error("an empty allow list let 10.0.0.1 in")
	}
	some, err := newAllowList([]string{"10.0.0.1", "::ffff:10.0.0.2", "10.0.1.250-10.0.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.0.0.1": false, "10.0.0.2": false, "10.0.0.3": true,
		"10.0.1.249": true, "10.0.1.250": false, "10.0.2.0": false, "10.0.2.3": false, "10.0.2.4": true} {
		if _, blocked := some.Lookup(net.ParseIP(ip)); blocked != want {
			t.Errorf("%s blocked %v, want %v", ip, blocked, want)
		}
	}
	if _, err := newAllowList([]string{"not-an-ip"}); err == nil {
		t.Error("a name in the allow list was taken")
	}
}

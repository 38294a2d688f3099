package swarm

import (
	"context"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Both ends of a peer connection the node makes or takes hold at most
// notSentLowat unsent bytes in the kernel.
func TestPeerSockets_BoundUnsentBytes(t *testing.T) {
	ctx := context.Background()
	l, err := peerListener(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	out, err := peerDialer().Dial(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in := <-accepted
	if in == nil {
		return
	}
	defer in.Close()
	for name, c := range map[string]net.Conn{"dialed": out, "accepted": in} {
		if got := notSentLowatOf(t, c); got != notSentLowat {
			t.Errorf("%s connection: TCP_NOTSENT_LOWAT %d, want %d", name, got, notSentLowat)
		}
	}
}

func notSentLowatOf(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

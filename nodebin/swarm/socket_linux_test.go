package swarm

import (
	"bytes"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Both ends of a peer connection the node makes or takes hold at most
// notSentLowat unsent bytes in the kernel.
func TestPeerSockets_BoundUnsentBytes(t *testing.T) {
	out, in := peerConnPair(t, peerDialer().Dial)
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

// peerConnPair returns a connection dial made to a peerListener and the
// one the listener accepted; both close when t ends.
func peerConnPair(t *testing.T, dial func(context.Context, string) (net.Conn, error)) (dialed, accepted net.Conn) {
	t.Helper()
	ctx := context.Background()
	l, err := peerListener(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type result struct {
		c   net.Conn
		err error
	}
	in := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		in <- result{c, err}
	}()
	dialed, err = dial(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	r := <-in
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	return dialed, r.c
}

// A block that trickles in arrives in a few large reads, and the message
// after it, however small, is read at once.
func TestLowatConn_ReadsATricklingBlockInFewReadsAndTheNextMessageAtOnce(t *testing.T) {
	peer, c := peerConnPair(t, func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp4", addr)
	})
	if _, ok := c.(*lowatConn); !ok {
		t.Fatalf("accepted a %T, want a *lowatConn", c)
	}

	const blockLen = 256 << 10
	s := newWireStream()
	s.piece(0, 0, bytes.Repeat([]byte{1}, blockLen))
	head, block := s.b[:s.blocks[0][0]], s.b[s.blocks[0][0]:]
	have := []byte{0, 0, 0, 5, 4, 0, 0, 0, 0}
	sent := make(chan error, 1)
	go func() {
		if _, err := peer.Write(head); err != nil {
			sent <- err
			return
		}
		// 1 KiB every 100 µs or so: a packet at a time.
		for b := block; len(b) > 0; b = b[min(1024, len(b)):] {
			if _, err := peer.Write(b[:min(1024, len(b))]); err != nil {
				sent <- err
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
		_, err := peer.Write(have)
		sent <- err
	}()

	if _, err := io.ReadFull(c, make([]byte, len(head))); err != nil {
		t.Fatal(err)
	}
	reads := 0
	for got := 0; got < blockLen; reads++ {
		n, err := c.Read(make([]byte, blockLen-got))
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	// 4 reads of maxRcvLowat, and at most one of what trickled in before
	// each wait, allow 10.
	if reads > 10 {
		t.Errorf("read a %d KiB block that came 1 KiB at a time in %d reads, want at most 10", blockLen>>10, reads)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(have))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, have) {
		t.Fatalf("the have after the block: read %x, %v; want %x at once", got, err, have)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d KiB block in %d reads", blockLen>>10, reads)
}

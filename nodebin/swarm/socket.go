package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/anacrolix/torrent"

	"github.com/layercast/layercast/nodebin/sockopt"
)

// notSentLowat bounds the bytes a peer connection's socket holds that the
// kernel has not sent yet (TCP_NOTSENT_LOWAT).
//
// A peer that asked for a block and then got it elsewhere cancels the
// request; anacrolix drops a cancelled block it has not written yet, but a
// block already handed to the socket goes out anyway and the peer throws
// it away. Without a bound the kernel queues what the send buffer's
// autotuning allows: on the lab's 6 Mbit/s links, 100–370 KB per
// connection (ss -tmi), seconds of a link shared by several connections,
// which is when peers cancel most. With the bound a block is written into
// the socket about as fast as the link takes it, so the choice of the
// next block, and every cancel before it, stays with the node.
//
// The cost is a wakeup of the writer per notSentLowat bytes sent. The gain
// is small: 10 hosts × 100 MB at 6 Mbit/s wasted 26.7 % of their upload
// against 28.1 % without (one run each, within run-to-run noise). Most of
// that waste was connections replaced mid-block (see addPeers), and a
// block anacrolix is writing cannot be taken back whatever the socket
// holds. The seeder bounds its sockets the same way (orchestrator/seed).
const notSentLowat = 32 << 10

// peerListener listens for peer connections on port (0: any), IPv4 only
// (the tracker hands out compact IPv4 peers).
func peerListener(ctx context.Context, port int) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	l, err := lc.Listen(ctx, "tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen for peers on port %d: %w", port, err)
	}
	return peerSocketListener{l}, nil
}

// peerSocketListener sets the peer socket options on every connection it
// accepts (Linux does not pass TCP_NOTSENT_LOWAT from a listening socket
// to the sockets it accepts) and makes it a lowatConn.
type peerSocketListener struct{ net.Listener }

func (l peerSocketListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c, nil
	}
	rc, err := sc.SyscallConn()
	if err == nil {
		err = controlPeerSocket("", "", rc)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("accept peer: %w", err)
	}
	return newLowatConn(c), nil
}

// peerDialer dials peers with the same socket options as peerListener's.
// Connections manage their own keep-alives (BitTorrent's).
func peerDialer() torrent.NetworkDialer {
	return torrent.NetworkDialer{
		Network: "tcp4",
		Dialer:  lowatDialer{&net.Dialer{Control: controlPeerSocket, KeepAlive: -1, FallbackDelay: -1}},
	}
}

// lowatDialer makes the connections it dials lowatConns.
type lowatDialer struct{ d *net.Dialer }

func (d lowatDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return newLowatConn(c), nil
}

// controlPeerSocket sets the options of a peer connection's socket. Where
// the bound is not supported (the node binary is built for Linux only),
// the socket goes without it.
func controlPeerSocket(_, _ string, c syscall.RawConn) error {
	if err := sockopt.SetNotSentLowat(c, notSentLowat); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	return nil
}

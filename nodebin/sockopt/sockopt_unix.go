//go:build linux || darwin

package sockopt

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// SetNotSentLowat makes writes to the socket return only once no more than
// n bytes wait unsent in its send buffer (TCP_NOTSENT_LOWAT), so a block
// handed to the kernel is a block on the wire.
func SetNotSentLowat(rc syscall.RawConn, n int) error {
	return setInt(rc, unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", n)
}

// SetRcvLowat makes the socket readable, for poll and epoll, only once n
// bytes are waiting in its receive buffer (SO_RCVLOWAT), or the
// connection ends; a read still returns what is there. Linux raises the
// receive buffer to hold n and wakes a reader early when the buffer would
// fill or the receive window close first, so the sender never waits for it.
func SetRcvLowat(rc syscall.RawConn, n int) error {
	return setInt(rc, unix.SOL_SOCKET, unix.SO_RCVLOWAT, "SO_RCVLOWAT", n)
}

// setInt sets the socket's integer option opt at level to n; name is the
// option's name for the error.
func setInt(rc syscall.RawConn, level, opt int, name string, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, n)
	}); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	if serr != nil {
		return fmt.Errorf("set %s: %w", name, serr)
	}
	return nil
}

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
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}); err != nil {
		return fmt.Errorf("set TCP_NOTSENT_LOWAT: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set TCP_NOTSENT_LOWAT: %w", serr)
	}
	return nil
}

// SetRcvLowat makes the socket readable, for poll and epoll, only once n
// bytes are waiting in its receive buffer (SO_RCVLOWAT), or the
// connection ends; a read still returns what is there. Linux raises the
// receive buffer to hold n and wakes a reader early when the buffer would
// fill or the receive window close first, so the sender never waits for it.
func SetRcvLowat(rc syscall.RawConn, n int) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n)
	}); err != nil {
		return fmt.Errorf("set SO_RCVLOWAT: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set SO_RCVLOWAT: %w", serr)
	}
	return nil
}

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

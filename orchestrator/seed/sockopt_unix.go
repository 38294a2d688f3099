//go:build linux || darwin

package seed

import (
	"net"

	"golang.org/x/sys/unix"
)

// setNotSentLowat makes nc's writes return only once no more than n bytes
// wait unsent in its socket buffer, so a block handed to the kernel is a
// block on the wire (see Config.MaxSending).
func setNotSentLowat(nc *net.TCPConn, n int) error {
	raw, err := nc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n)
	}); err != nil {
		return err
	}
	return serr
}

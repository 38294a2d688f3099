package seed

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// sinceLastAck returns how long ago nc's peer last acknowledged data, when
// data is waiting for its acknowledgement (TCP_INFO).
func sinceLastAck(nc *net.TCPConn) (time.Duration, bool) {
	raw, err := nc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return 0, false
	}
	if info.Unacked == 0 {
		return 0, false
	}
	return time.Duration(info.Last_ack_recv) * time.Millisecond, true
}

//go:build !linux && !darwin

package seed

import (
	"errors"
	"net"
)

// setNotSentLowat is not available here: the kernel's send buffer, not
// Config.MaxSending, then decides how many connections have data queued.
func setNotSentLowat(*net.TCPConn, int) error {
	return errors.New("TCP_NOTSENT_LOWAT is not supported on this system")
}

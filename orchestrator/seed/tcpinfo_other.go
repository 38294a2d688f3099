//go:build !linux

package seed

import (
	"net"
	"time"
)

// sinceLastAck cannot tell here: a peer whose link went down is dropped
// only when a write times out (writeTimeout).
func sinceLastAck(*net.TCPConn) (time.Duration, bool) { return 0, false }

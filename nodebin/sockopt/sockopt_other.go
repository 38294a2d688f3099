//go:build !linux && !darwin

package sockopt

import (
	"errors"
	"fmt"
	"syscall"
)

// SetNotSentLowat is not available here: the kernel's send buffer alone
// decides how much a socket holds unsent.
func SetNotSentLowat(syscall.RawConn, int) error {
	return fmt.Errorf("set TCP_NOTSENT_LOWAT: %w", errors.ErrUnsupported)
}

// SetRcvLowat is not available here: a socket is readable as soon as one
// byte is.
func SetRcvLowat(syscall.RawConn, int) error {
	return fmt.Errorf("set SO_RCVLOWAT: %w", errors.ErrUnsupported)
}

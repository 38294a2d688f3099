package openssh

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors that retrying cannot fix. Retry stops on them; the orchestrator
// reports them as the host's failure reason.
var (
	// ErrHostKeyMismatch: the host offered a key that differs from the one
	// in known_hosts (or a revoked key, or a host certificate that does not
	// check out). Possibly an attack; never retried, never overridden.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrHostKeyUnknown: known_hosts has no key for the host and new keys
	// are not accepted.
	ErrHostKeyUnknown = errors.New("host key unknown")
	// ErrAuthFailed: the host refused every key offered, or there was no
	// key to offer.
	ErrAuthFailed = errors.New("authentication failed")
	// ErrKeyFile: an identity file is unreadable, malformed, or encrypted
	// without ssh-agent holding it.
	ErrKeyFile = errors.New("identity file unusable")
	// ErrSSHConfig: ~/.ssh/config cannot be read or asks for something
	// layercast cannot do (ProxyCommand).
	ErrSSHConfig = errors.New("ssh config")
	// ErrConnectionLost: the host stopped answering on an open connection
	// (keepalives unanswered, a cut link), so it was closed. What ran
	// there may still run; its outcome is unknown.
	ErrConnectionLost = errors.New("lost the SSH connection to the host")
)

var permanent = []error{ErrHostKeyMismatch, ErrHostKeyUnknown, ErrAuthFailed, ErrKeyFile, ErrSSHConfig}

// Permanent reports whether err is one that retrying cannot fix, or the
// end of ctx.
func Permanent(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, p := range permanent {
		if errors.Is(err, p) {
			return true
		}
	}
	return false
}

// Retry calls fn up to attempts times, waiting delay before the second
// attempt and twice as long before each later one (at most 30s). It stops
// at once on success, on a Permanent error and when ctx ends; the error
// returned is the last one fn returned.
func Retry(ctx context.Context, attempts int, delay time.Duration, fn func(context.Context) error) error {
	if attempts < 1 {
		attempts = 1
	}
	var err error
	for i := range attempts {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return errors.Join(err, ctx.Err())
			case <-t.C:
			}
			delay = min(2*delay, 30*time.Second)
		}
		err = fn(ctx)
		if err == nil || Permanent(err) || ctx.Err() != nil {
			return err
		}
	}
	if attempts > 1 {
		return fmt.Errorf("after %d attempts: %w", attempts, err)
	}
	return err
}

// ExitError is a remote command that ran and exited non-zero (or was
// killed by a signal).
type ExitError struct {
	Cmd    string // what was run, for the message
	Code   int    // -1 when killed by a signal
	Signal string
	Stderr string // last bytes of its stderr
}

func (e *ExitError) Error() string {
	what := fmt.Sprintf("exit status %d", e.Code)
	if e.Signal != "" {
		what = "killed by signal " + e.Signal
	}
	if e.Stderr != "" {
		return fmt.Sprintf("%s: %s: %s", e.Cmd, what, e.Stderr)
	}
	return fmt.Sprintf("%s: %s", e.Cmd, what)
}

package openssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// Process is a command started on a host.
type Process interface {
	// Stdin is the command's standard input; closing it sends EOF.
	Stdin() io.WriteCloser
	// Stdout and Stderr must both be read, or the command blocks once the
	// SSH window fills.
	Stdout() io.Reader
	Stderr() io.Reader
	// Wait waits for the command to exit; a non-zero exit is an *ExitError.
	Wait() error
	// Stop ends the command: it closes stdin, sends SIGTERM, waits until
	// ctx ends, then closes the session. It returns once the command is
	// gone or the session closed; nil if the command had exited.
	Stop(ctx context.Context) error
}

type process struct {
	cmd    Command
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
	done   chan struct{}
	err    error
}

// Start starts cmd with piped stdin, stdout and stderr. The session stays
// open until the command exits or Stop is called.
func (c *Client) Start(ctx context.Context, cmd Command) (Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, c.sessionErr("open session", err)
	}
	p := &process{cmd: cmd, s: s, done: make(chan struct{})}
	if p.stdin, err = s.StdinPipe(); err == nil {
		if p.stdout, err = s.StdoutPipe(); err == nil {
			p.stderr, err = s.StderrPipe()
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	if err := s.Start(cmd.String()); err != nil {
		s.Close()
		return nil, c.sessionErr("start "+cmd.Path, err)
	}
	go func() {
		err := s.Wait()
		var missing *ssh.ExitMissingError
		switch {
		case err == nil:
		case errors.As(err, &missing):
			// No exit status: the session ended with its connection (the
			// host's sshd died, or the link dropped it), which the
			// connection's reader may see a moment later; otherwise the
			// command was killed in a way sshd could not report.
			p.err = exitError(cmd, err, "")
			if lost := c.sessionErr("wait for "+cmd.Path, err); errors.Is(lost, ErrConnectionLost) {
				p.err = lost
			}
		default:
			p.err = exitError(cmd, err, "")
			if lost := c.lostErr(); lost != nil {
				p.err = lost
			}
		}
		s.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) Stdin() io.WriteCloser { return p.stdin }
func (p *process) Stdout() io.Reader     { return p.stdout }
func (p *process) Stderr() io.Reader     { return p.stderr }

func (p *process) Wait() error {
	<-p.done
	return p.err
}

func (p *process) Stop(ctx context.Context) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.stdin.Close()
	_ = p.s.Signal(ssh.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
	}
	_ = p.s.Signal(ssh.SIGKILL)
	p.s.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	return fmt.Errorf("stop %s: %w", p.cmd.Path, ctx.Err())
}

package openssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// Command is a program to run on a host. Args are quoted for the remote
// shell, so they can hold anything; never put a secret in them (other
// users of the host can read a process's arguments): pass secrets on Stdin.
type Command struct {
	Path string
	Args []string
	// Become runs it as root through `sudo -n --` (never prompts).
	Become bool
	// Stdin is fed to the command by Run; Start ignores it (use
	// Process.Stdin).
	Stdin io.Reader
}

// String is the command line as the remote shell sees it.
func (c Command) String() string {
	parts := make([]string, 0, len(c.Args)+4)
	if c.Become {
		parts = append(parts, "sudo", "-n", "--")
	}
	parts = append(parts, shellQuote(c.Path))
	for _, a := range c.Args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Script runs a shell script with sh -c as the login user; args are $1,
// $2, ...
func Script(script string, args ...string) Command {
	return Command{Path: "sh", Args: append([]string{"-c", script, "sh"}, args...)}
}

// Client is one SSH connection to a host (plus its jump hosts), with at most
// one SFTP client. Every method is safe for concurrent use.
type Client struct {
	host   inventory.Host
	target Target
	ssh    *ssh.Client
	jumps  []*ssh.Client
	log    *slog.Logger

	sftpMu sync.Mutex
	sftp   *sftp.Client

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
	// lost is set (before closed is closed) when keepAlive gave up on the
	// host; it wraps ErrConnectionLost.
	lost error
	// ended is closed when the SSH connection ended, for any reason;
	// endErr (set before) is what ended it.
	ended  chan struct{}
	endErr error
}

func newClient(h inventory.Host, t Target, c *ssh.Client, jumps []*ssh.Client, log *slog.Logger) *Client {
	cl := &Client{host: h, target: t, ssh: c, jumps: jumps, log: log, closed: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		cl.endErr = c.Wait()
		close(cl.ended)
	}()
	return cl
}

// endWait bounds how long a failed session waits to learn whether the
// connection ended: the connection's reader sees its end first.
const endWait = 200 * time.Millisecond

// sessionErr is the error of a session on c that failed doing what. When
// the connection ended first, the error says so, and why: the keepalives
// went unanswered, or the host (or a middlebox) ended it; x/crypto/ssh
// itself says only EOF.
func (c *Client) sessionErr(what string, err error) error {
	select {
	case <-c.ended:
	case <-time.After(endWait):
		return fmt.Errorf("%s: %w", what, err)
	}
	if lost := c.lostErr(); lost != nil {
		return fmt.Errorf("%s: %w (%w)", what, lost, err)
	}
	select {
	case <-c.closed:
		return fmt.Errorf("%s: %w", what, err) // closed by us
	default:
	}
	why := "the host closed it"
	if c.endErr != nil && !errors.Is(c.endErr, io.EOF) {
		why = c.endErr.Error()
	}
	return fmt.Errorf("%s: %w: the connection ended (%s): %w", what, ErrConnectionLost, why, err)
}

// Host is the inventory host this connection reaches.
func (c *Client) Host() inventory.Host { return c.host }

// Target is how the host was reached.
func (c *Client) Target() Target { return c.target }

// Close closes the connection, the SFTP client and the jump connections.
// Running sessions end with it. It is safe to call more than once, and it
// does not wait for a host that stopped answering (a cut link).
func (c *Client) Close() error { return c.close(nil) }

// lostErr says why the connection was given up, or nil.
func (c *Client) lostErr() error {
	select {
	case <-c.closed:
		return c.lost
	default:
		return nil
	}
}

// close closes the client; lost (may be nil) records that the host stopped
// answering, for the sessions that end with the connection.
func (c *Client) close(lost error) error {
	c.closeOnce.Do(func() {
		c.lost = lost
		close(c.closed)
		var errs []error
		// The connection goes first: closing the SFTP client on a live
		// connection waits for the server's answer, which never comes
		// over a dead link.
		if err := c.ssh.Close(); err != nil && !isNetErr(err) {
			errs = append(errs, fmt.Errorf("close ssh: %w", err))
		}
		c.sftpMu.Lock()
		if c.sftp != nil {
			if err := c.sftp.Close(); err != nil && !isNetErr(err) {
				errs = append(errs, fmt.Errorf("close sftp: %w", err))
			}
			c.sftp = nil
		}
		c.sftpMu.Unlock()
		for i := len(c.jumps) - 1; i >= 0; i-- {
			c.jumps[i].Close()
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// keepAlive sends keepalive requests; when three intervals pass without an
// answer the connection is closed, which fails every session on it (a cut
// link then shows as an error instead of a hang).
func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-c.closed:
			return
		case err := <-reply:
			if err != nil {
				c.log.Warn("keepalive failed, closing connection", "err", err)
				c.close(fmt.Errorf("%w: keepalive: %w", ErrConnectionLost, err))
				return
			}
		case <-time.After(3 * every):
			c.log.Warn("no keepalive answer, closing connection", "after", 3*every)
			c.close(fmt.Errorf("%w: no answer to keepalives for %s", ErrConnectionLost, 3*every))
			return
		}
	}
}

// maxOutput bounds what Run keeps of a command's stdout.
const maxOutput = 4 << 20

// abandonGrace is how long Run waits for a command it killed to end.
const abandonGrace = 5 * time.Second

// Run runs cmd, waits for it and returns its stdout. A non-zero exit is an
// *ExitError carrying the tail of stderr. When ctx ends the command is
// signalled and its session closed.
func (c *Client) Run(ctx context.Context, cmd Command) ([]byte, error) {
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, c.sessionErr("open session", err)
	}
	defer s.Close()
	var stdout limitedBuffer
	stderr := limitedBuffer{max: 4096, keepTail: true}
	stdout.max = maxOutput
	s.Stdout, s.Stderr = &stdout, &stderr
	if cmd.Stdin != nil {
		s.Stdin = cmd.Stdin
	}
	line := cmd.String()
	if err := s.Start(line); err != nil {
		return nil, c.sessionErr("start "+cmd.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Signal(ssh.SIGKILL)
		s.Close()
		// sshd keeps the channel open while any child of the command
		// holds its output (a docker CLI stuck on a hung daemon outlives
		// the killed shell): give up waiting after a grace, the session
		// ends with the connection.
		select {
		case <-done:
		case <-time.After(abandonGrace):
			c.log.Warn("command did not end after it was killed; abandoned", "cmd", cmd.Path)
		}
		return stdout.Bytes(), fmt.Errorf("run %s: %w", cmd.Path, context.Cause(ctx))
	}
	if err != nil {
		return stdout.Bytes(), exitError(cmd, err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func exitError(cmd Command, err error, stderr string) error {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Cmd: cmd.Path, Code: ee.ExitStatus(), Signal: ee.Signal(), Stderr: strings.TrimSpace(stderr)}
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return &ExitError{Cmd: cmd.Path, Code: -1, Signal: "unknown (connection lost?)", Stderr: strings.TrimSpace(stderr)}
	}
	return fmt.Errorf("run %s: %w", cmd.Path, err)
}

// limitedBuffer keeps at most max bytes: the head, or with keepTail the
// tail.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	keepTail bool
	mu       sync.Mutex
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if b.keepTail {
		b.buf.Write(p)
		if over := b.buf.Len() - b.max; over > 0 {
			b.buf.Next(over)
		}
		return n, nil
	}
	if room := b.max - b.buf.Len(); room < len(p) {
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func (b *limitedBuffer) String() string { return string(b.Bytes()) }

package openssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// Config tunes an Dialer. The zero value reads the user's files, as
// OpenSSH does.
type Config struct {
	// SSHConfigPath is the ssh_config file; "" means ~/.ssh/config (a
	// missing file is fine), "none" reads none. Tests set it.
	SSHConfigPath string
	// KnownHostsPath, when set, is the one user known_hosts file, as `ssh
	// -o UserKnownHostsFile=FILE` would have it: set it to the
	// inventory's KnownHosts. "" means ssh_config's UserKnownHostsFile,
	// else ~/.ssh/known_hosts and ~/.ssh/known_hosts2.
	KnownHostsPath string
	// GlobalKnownHosts are the system's known_hosts files unless
	// ssh_config's GlobalKnownHostsFile names others; nil means OpenSSH's
	// /etc/ssh/ssh_known_hosts and /etc/ssh/ssh_known_hosts2. They are read
	// too: their keys count, their revocations win, and a new key is
	// never accepted for a host they pin to another. Tests set it.
	GlobalKnownHosts []string
	// AcceptNewHostKeys trusts and records the key of a host that
	// known_hosts does not list. A changed key is never accepted.
	AcceptNewHostKeys bool
	// AgentSocket is ssh-agent's socket; "" means $SSH_AUTH_SOCK, "none"
	// uses no agent.
	AgentSocket string
	// Home replaces the user's home directory for ~ and ~/.ssh defaults.
	Home string
	// LocalUser is the login name when neither inventory nor ssh_config
	// names one; "" means the current user.
	LocalUser string
	// ConnectTimeout bounds TCP connect plus SSH handshake of one hop
	// (default 15s).
	ConnectTimeout time.Duration
	// KeepAlive is the interval of keepalive requests; a connection that
	// misses three is closed (default 20s: a minute without an answer,
	// the node's own jobspec.DefaultHeartbeat; negative disables).
	KeepAlive time.Duration
	// DialAttempts is how often Dial tries a host before giving up on
	// errors that may pass (refused, timeout); default 3.
	DialAttempts int
	// RetryDelay is the wait before the second attempt (default 1s).
	RetryDelay time.Duration
	Logger     *slog.Logger
}

// Dialer opens SSH connections to inventory hosts. It is safe for
// concurrent use.
type Dialer struct {
	cfg      Config
	resolver resolver
	keys     hostKeys
	log      *slog.Logger
}

// NewDialer reads ~/.ssh/config (or cfg.SSHConfigPath) once and returns a
// dialer. A malformed ssh_config is an error wrapping ErrSSHConfig.
func NewDialer(cfg Config) (*Dialer, error) {
	if cfg.Home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("find home directory: %w", err)
		}
		cfg.Home = h
	}
	if cfg.LocalUser == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("find local user: %w", err)
		}
		cfg.LocalUser = u.Username
	}
	if cfg.SSHConfigPath == "" {
		cfg.SSHConfigPath = filepath.Join(cfg.Home, ".ssh", "config")
	}
	switch cfg.AgentSocket {
	case "":
		cfg.AgentSocket = os.Getenv("SSH_AUTH_SOCK")
	case "none":
		cfg.AgentSocket = ""
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 20 * time.Second
	}
	if cfg.DialAttempts <= 0 {
		cfg.DialAttempts = 3
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sc, err := loadSSHConfig(cfg.SSHConfigPath)
	if err != nil {
		return nil, err
	}
	return &Dialer{
		cfg:      cfg,
		resolver: resolver{cfg: sc, home: cfg.Home, localUser: cfg.LocalUser, knownHosts: cfg.KnownHostsPath, globalKnownHosts: cfg.GlobalKnownHosts},
		keys:     hostKeys{acceptNew: cfg.AcceptNewHostKeys, mu: &sync.Mutex{}},
		log:      cfg.Logger,
	}, nil
}

// Resolve says how h would be reached: address, port, user, keys and jump
// hosts after ~/.ssh/config and defaults. It opens no connection.
func (d *Dialer) Resolve(h inventory.Host) (Target, error) {
	return d.resolver.resolveHost(h)
}

// Dial connects to h (through its ProxyJump hosts), verifying every host
// key and authenticating. Errors that may pass are retried; the error
// returned wraps one of the package's sentinels when one applies.
func (d *Dialer) Dial(ctx context.Context, h inventory.Host) (*Client, error) {
	t, err := d.Resolve(h)
	if err != nil {
		return nil, err
	}
	var c *Client
	err = Retry(ctx, d.cfg.DialAttempts, d.cfg.RetryDelay, func(ctx context.Context) error {
		var err error
		c, err = d.dialTarget(ctx, h, t)
		if err != nil {
			d.log.Debug("dial failed", "host", h.Name, "target", t.String(), "err", err)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (d *Dialer) dialTarget(ctx context.Context, h inventory.Host, t Target) (*Client, error) {
	var (
		hops []*ssh.Client
		prev *ssh.Client
	)
	closeHops := func() {
		for i := len(hops) - 1; i >= 0; i-- {
			hops[i].Close()
		}
	}
	for _, j := range t.Jumps {
		c, err := d.dialHop(ctx, prev, j)
		if err != nil {
			closeHops()
			return nil, fmt.Errorf("jump host %s: %w", j.Alias, err)
		}
		hops = append(hops, c)
		prev = c
	}
	c, err := d.dialHop(ctx, prev, t)
	if err != nil {
		closeHops()
		return nil, err
	}
	cl := newClient(h, t, c, hops, d.log.With("host", h.Name))
	if d.cfg.KeepAlive > 0 {
		go cl.keepAlive(d.cfg.KeepAlive)
	}
	return cl, nil
}

// dialHop opens one SSH connection, directly or through via.
func (d *Dialer) dialHop(ctx context.Context, via *ssh.Client, t Target) (*ssh.Client, error) {
	// The hop's own deadline is a failure that a retry may cure, unlike
	// the end of the caller's ctx.
	ctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ConnectTimeout,
		fmt.Errorf("no SSH answer within %s (raise --connect-timeout if the link is only slow)", d.cfg.ConnectTimeout))
	defer cancel()

	check, algos, hostKeyErr, err := d.keys.checker(t)
	if err != nil {
		return nil, err
	}
	ag, closeAgent, agentErr := openAgent(d.cfg.AgentSocket)
	defer closeAgent()
	kr, err := loadKeys(t, ag)
	if err != nil {
		return nil, err
	}
	if agentErr != nil {
		kr.problems = append(kr.problems, agentErr.Error())
	}
	if len(kr.signers) == 0 {
		return nil, kr.noKeysError(t, d.cfg.AgentSocket)
	}
	var authStarted atomic.Bool
	cc := &ssh.ClientConfig{
		User:              t.User,
		Auth:              []ssh.AuthMethod{kr.authMethod(&authStarted)},
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
		Timeout:           d.cfg.ConnectTimeout,
	}

	addr := t.Addr()
	var conn net.Conn
	if via == nil {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, "tcp", addr)
	} else {
		conn, err = via.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	// The handshake has no context of its own: closing the connection when
	// ctx ends unblocks it.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if !stop() {
		if err == nil {
			sc.Close()
		}
		conn.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		conn.Close()
		if hkErr := hostKeyErr(); hkErr != nil {
			return nil, hkErr
		}
		if authStarted.Load() && !isNetErr(err) {
			return nil, fmt.Errorf("%w: %s refused the keys offered (%d key(s)): %v", ErrAuthFailed, t, len(kr.signers), err)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// isNetErr: the connection broke, which retrying may fix.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

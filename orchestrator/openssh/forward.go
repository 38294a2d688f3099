package openssh

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
)

// Forward is a remote port forwarding: connections to 127.0.0.1:RemotePort
// on the host reach an address on the bastion.
type Forward interface {
	RemotePort() int
	Close() error
}

type forward struct {
	ln    net.Listener
	port  int
	local string
	log   interface{ Warn(string, ...any) }

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Forward asks the host's sshd to listen on 127.0.0.1 at a port it picks
// and forwards every connection there to localAddr (host:port on the
// bastion, e.g. the tracker). It serves --tunnel: nodes reach the bastion
// through the SSH connection. The forward ends with Close, with the
// connection, or when ctx ends.
func (c *Client) Forward(ctx context.Context, localAddr string) (Forward, error) {
	ln, err := c.ssh.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("remote forward to %s: %w (is AllowTcpForwarding off in the host's sshd?)", localAddr, err)
	}
	port := 0
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	f := &forward{ln: ln, port: port, local: localAddr, log: c.log, conns: map[net.Conn]struct{}{}}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer stop()
		f.serve()
	}()
	return f, nil
}

func (f *forward) RemotePort() int { return f.port }

func (f *forward) serve() {
	for {
		remote, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(remote) {
			remote.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(remote)
			var d net.Dialer
			local, err := d.Dial("tcp", f.local)
			if err != nil {
				f.log.Warn("forwarded connection: cannot reach bastion address", "addr", f.local, "err", err)
				return
			}
			if !f.track(local) {
				local.Close()
				return
			}
			defer f.untrack(local)
			pipe(remote, local)
		}()
	}
}

func (f *forward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forward) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// Close stops listening on the host and closes forwarded connections.
func (f *forward) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if err != nil && !isNetErr(err) {
		return fmt.Errorf("close remote forward: %w", err)
	}
	return nil
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

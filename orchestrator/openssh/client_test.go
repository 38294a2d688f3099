package openssh

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// connect dials an in-process server whose commands run on this machine.
func connect(t *testing.T, mod func(*Config)) *Client {
	t.Helper()
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	e.trust(t, s, hk.PublicKey())
	d := e.dialer(t, mod)
	conn, err := d.Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestClient_RunQuotesArgsAndReportsExitStatus(t *testing.T) {
	c := connect(t, nil)
	ctx := context.Background()
	out, err := c.Run(ctx, Command{Path: "printf", Args: []string{"%s|", "a b", "it's", "$HOME", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "a b|it's|$HOME||" {
		t.Errorf("args arrived as %q", got)
	}
	_, err = c.Run(ctx, Script("echo oops >&2; exit 7"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 7 || ee.Stderr != "oops" {
		t.Errorf("want exit 7 with stderr oops, got %v", err)
	}
	out, err = c.Run(ctx, Command{Path: "cat", Stdin: strings.NewReader("from stdin")})
	if err != nil || string(out) != "from stdin" {
		t.Errorf("stdin: %q %v", out, err)
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Run(tctx, Command{Path: "sleep", Args: []string{"30"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx end: got %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Run did not return when ctx ended")
	}
}

func TestClient_WriteFileCreatesANewFileOverSFTP(t *testing.T) {
	c := connect(t, nil)
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "f")
	data := bytes.Repeat([]byte("layer"), 100000)
	if err := c.WriteFile(ctx, p, data); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file differs (%v)", err)
	}
	if err := c.WriteFile(ctx, p, []byte("again")); err == nil {
		t.Errorf("WriteFile replaced an existing file")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	q := filepath.Join(t.TempDir(), "g")
	if err := c.WriteFile(cctx, q, data); !errors.Is(err, context.Canceled) {
		t.Errorf("write after ctx ended: %v", err)
	}
	if _, err := os.Stat(q); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed write left %s", q)
	}
}

func TestClient_StartStreamsStdioAndStopEndsIt(t *testing.T) {
	c := connect(t, nil)
	p, err := c.Start(context.Background(), Script(`read line; echo "got $line"; echo progress >&2; exec sleep 60`))
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr())
	if _, err := io.WriteString(p.Stdin(), "spec\n"); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(p.Stdout()).ReadString('\n')
	if err != nil || line != "got spec\n" {
		t.Fatalf("stdout %q %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("stop took %v; SIGTERM should end sleep at once", time.Since(start))
	}
	var ee *ExitError
	if err := p.Wait(); !errors.As(err, &ee) {
		t.Errorf("a process ended by SIGTERM should report it: %v", err)
	}
}

func TestClient_ForwardReachesTheBastionAddress(t *testing.T) {
	c := connect(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				io.Copy(conn, conn)
			}()
		}
	}()
	f, err := c.Forward(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if f.RemotePort() <= 0 {
		t.Fatalf("remote port %d", f.RemotePort())
	}
	// The in-process "host" is this machine: its 127.0.0.1:port is ours.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.RemotePort()))
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "ping\n")
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Errorf("echo through forward: %q %v", line, err)
	}
	conn.Close()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if c2, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", f.RemotePort()), time.Second); err == nil {
		c2.Close()
		t.Errorf("remote port still open after Close")
	}
}

func TestClient_SessionOnAConnectionTheHostEndedSaysSo(t *testing.T) {
	e := newEnv(t)
	hk := newSigner(t)
	s := startServer(t, []ssh.Signer{hk}, e.key.PublicKey())
	e.trust(t, s, hk.PublicKey())
	c, err := e.dialer(t, nil).Dial(context.Background(), e.host(s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Run(context.Background(), Command{Path: "true"}); err != nil {
		t.Fatal(err)
	}
	// The host ends every connection (sshd restarted, MaxStartups, a
	// middlebox): x/crypto/ssh says only EOF.
	s.mu.Lock()
	for _, nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	<-c.ended
	_, err = c.Run(context.Background(), Command{Path: "true"})
	if !errors.Is(err, ErrConnectionLost) || !strings.Contains(err.Error(), "connection ended") {
		t.Errorf("run after the host ended the connection: %v, want ErrConnectionLost saying it ended", err)
	}
	_, err = c.Start(context.Background(), Command{Path: "true"})
	if !errors.Is(err, ErrConnectionLost) {
		t.Errorf("start after the host ended the connection: %v, want ErrConnectionLost", err)
	}
	// Closed by us: not a lost connection.
	c2 := connect(t, nil)
	c2.Close()
	if _, err := c2.Run(context.Background(), Command{Path: "true"}); err == nil || errors.Is(err, ErrConnectionLost) {
		t.Errorf("run on a connection we closed: %v", err)
	}
}

package tracker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// startServe serves a test tracker on a loopback port until the test ends
// and returns its address.
func startServe(t *testing.T, cfg ServeConfig) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, newTestTracker(NewFakeClock(time.Unix(1000, 0))), cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const announceRequest = "GET /announce/" + testToken + "?info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=6881&left=0 HTTP/1.1\r\nHost: tracker\r\n\r\n"

// readResponse reads one HTTP response from c within limit, and its body
// if it can: an error answer without a length ends where the connection
// does, and a connection closed with unread input ends in a reset.
func readResponse(c net.Conn, br *bufio.Reader, limit time.Duration) (*http.Response, error) {
	c.SetReadDeadline(time.Now().Add(limit))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// waitClosed fails unless the server closes c within limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("server still holds the connection after %v", limit)
	}
}

func TestServe_CutsOffSlowLorisHeaders(t *testing.T) {
	addr := startServe(t, ServeConfig{ReadHeaderTimeout: 300 * time.Millisecond})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /announce/"+testToken+" HTTP/1.1\r\nHost: tracker\r\n"); err != nil {
		t.Fatal(err)
	}
	// One header byte every 50 ms, never the blank line that ends them.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range 200 {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := io.WriteString(c, "X"); err != nil {
					return
				}
			}
		}
	}()
	waitClosed(t, c, 10*time.Second)
}

func TestServe_HoldsConnectionsBeyondTheCap(t *testing.T) {
	addr := startServe(t, ServeConfig{MaxConns: 2, IdleTimeout: time.Minute, ReadHeaderTimeout: time.Minute})
	// Two kept-alive connections, each answered once, hold both slots.
	var held []net.Conn
	for range 2 {
		c := dial(t, addr)
		io.WriteString(c, announceRequest)
		if _, err := readResponse(c, bufio.NewReader(c), 10*time.Second); err != nil {
			t.Fatalf("first two connections: %v", err)
		}
		held = append(held, c)
	}
	third := dial(t, addr)
	br := bufio.NewReader(third)
	io.WriteString(third, announceRequest)
	if resp, err := readResponse(third, br, 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection answered (%v, %v) while two of two slots are held", resp, err)
	}
	held[0].Close()
	resp, err := readResponse(third, br, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("third connection after a slot freed: %v, %v", resp, err)
	}
}

func TestServe_RefusesOversizedHeaders(t *testing.T) {
	addr := startServe(t, ServeConfig{MaxHeaderBytes: 1 << 10})
	c := dial(t, addr)
	big := "GET /announce/" + testToken + " HTTP/1.1\r\nHost: tracker\r\nX-Pad: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	go io.WriteString(c, big) // the server may stop reading early
	resp, err := readResponse(c, bufio.NewReader(c), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want %d", resp.StatusCode, http.StatusRequestHeaderFieldsTooLarge)
	}
}

func TestServe_ClosesIdleConnections(t *testing.T) {
	addr := startServe(t, ServeConfig{IdleTimeout: 200 * time.Millisecond})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, announceRequest)
	if _, err := readResponse(c, br, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, 10*time.Second)
}

func TestServe_ClosesConnectionsFromStrangers(t *testing.T) {
	hosts := []netip.Addr{netip.MustParseAddr("192.0.2.7")}
	// Loopback is not one of the job's hosts here.
	strangers := startServe(t, ServeConfig{AllowedIPs: hosts})
	c := dial(t, strangers)
	io.WriteString(c, announceRequest)
	if resp, err := readResponse(c, bufio.NewReader(c), 10*time.Second); err == nil {
		t.Fatalf("a stranger got an answer: %v", resp.Status)
	}
	// Under --tunnel, loopback is admitted.
	tunnel := startServe(t, ServeConfig{AllowedIPs: hosts, AllowLoopback: true})
	c = dial(t, tunnel)
	io.WriteString(c, announceRequest)
	if resp, err := readResponse(c, bufio.NewReader(c), 10*time.Second); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("loopback with AllowLoopback: %v, %v", resp, err)
	}
}

func TestServe_StopsWhenItsContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, ln, newTestTracker(NewFakeClock(time.Unix(1000, 0))), ServeConfig{}) }()
	// An idle connection does not hold the shutdown up.
	idle := dial(t, ln.Addr().String())
	io.WriteString(idle, announceRequest)
	if _, err := readResponse(idle, bufio.NewReader(idle), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Error("listener still accepts after Serve returned")
	}
}

func TestServe_ReturnsListenerErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = Serve(context.Background(), ln, http.NotFoundHandler(), ServeConfig{})
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener: %v, want net.ErrClosed", err)
	}
}

func TestServe_AnswersWithNoHeaderBeyondTheLength(t *testing.T) {
	c := dial(t, startServe(t, ServeConfig{AllowLoopback: true}))
	if _, err := io.WriteString(c, announceRequest); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := readResponse(c, br, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Each header here crosses the bastion's link on every announce.
	for k := range resp.Header {
		if k != "Content-Length" {
			t.Errorf("answer carries %s: %q", k, resp.Header.Get(k))
		}
	}
	if resp.ContentLength <= 0 {
		t.Errorf("answer without a length (%d): the keep-alive connection would end with it", resp.ContentLength)
	}
}

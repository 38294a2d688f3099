package handoff

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// start serves a random file on loopback and returns the server, its URL
// and the file's bytes.
func start(t *testing.T, cfg Config) (*Server, string, []byte) {
	return startSize(t, cfg, 3<<20+17)
}

func startSize(t *testing.T, cfg Config, size int) (*Server, string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	cfg.Path = filepath.Join(t.TempDir(), "node.gz")
	if err := os.WriteFile(cfg.Path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg.Name == "" {
		cfg.Name = "abc.gz"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ln, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, fmt.Sprintf("http://%s/%s", s.Addr(), cfg.Name), data
}

func get(t *testing.T, url string, hdr http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestServer_HandsTheFileToAllowedHosts(t *testing.T) {
	s, url, data := start(t, Config{AllowedIPs: []string{"127.0.0.1"}})
	code, got := get(t, url, nil)
	if code != http.StatusOK || !bytes.Equal(got, data) {
		t.Fatalf("GET: status %d, %d bytes equal=%v; want 200 and the file", code, len(got), bytes.Equal(got, data))
	}
	// A fetch that broke off resumes with a range.
	code, got = get(t, url, http.Header{"Range": {"bytes=1000-"}})
	if code != http.StatusPartialContent || !bytes.Equal(got, data[1000:]) {
		t.Fatalf("range GET: status %d, equal=%v", code, bytes.Equal(got, data[1000:]))
	}
	st := s.Stats()
	if st.Transfers != 2 || st.Bytes != int64(len(data)+len(data)-1000) {
		t.Fatalf("stats %+v, want 2 transfers of %d bytes", st, 2*len(data)-1000)
	}
}

func TestServer_RefusesOtherHostsAndPaths(t *testing.T) {
	_, url, _ := start(t, Config{AllowedIPs: []string{"10.1.2.3"}})
	if code, _ := get(t, url, nil); code != http.StatusForbidden {
		t.Fatalf("a host outside the job got %d, want 403", code)
	}
	_, url, _ = start(t, Config{})
	if code, _ := get(t, url, nil); code != http.StatusForbidden {
		t.Fatalf("an empty allow list admitted a fetch (%d), want 403", code)
	}
	_, url, _ = start(t, Config{AllowedIPs: []string{"127.0.0.1"}})
	if code, _ := get(t, url+"x", nil); code != http.StatusNotFound {
		t.Fatalf("another path got %d, want 404", code)
	}
}

// holdSlot starts a transfer of the file (abc.gz, larger than the socket
// buffers hold) and stops reading, so that the server blocks writing the
// rest and the transfer holds its slot until the connection closes.
func holdSlot(t *testing.T, s *Server) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fmt.Fprintf(conn, "GET /abc.gz HTTP/1.1\r\nHost: x\r\n\r\n")
	head := make([]byte, 512)
	if _, err := io.ReadAtLeast(conn, head, 100); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 200")) {
		t.Fatalf("first transfer: %q", head[:20])
	}
	return conn
}

func TestServer_BusyBeyondMaxTransfers(t *testing.T) {
	// Hold the one slot: read the head of a transfer and stop reading, so
	// the server blocks writing the rest (more than the socket buffers
	// hold) into the socket.
	s, url, data := startSize(t, Config{AllowedIPs: []string{"127.0.0.1"}, MaxTransfers: 1}, 64<<20)
	conn := holdSlot(t, s)
	code, _ := get(t, url, nil)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("second concurrent transfer got %d, want 503", code)
	}
	conn.Close()
	// Once the slot frees, the next fetch is served.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, got := get(t, url, nil)
		if code == http.StatusOK {
			if !bytes.Equal(got, data) {
				t.Fatal("file differs")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never freed: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServer_CloseEndsTransfers(t *testing.T) {
	s, _, _ := start(t, Config{AllowedIPs: []string{"127.0.0.1"}})
	var wg sync.WaitGroup
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /abc.gz HTTP/1.1\r\nHost: x\r\n\r\n")
	wg.Add(1)
	go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, conn) }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.Close(ctx) // ends the stalled transfer; the cleanup's Close is a no-op
	conn.Close()
	wg.Wait()
}

func TestServer_ServesDocumentsBesideTheFileWhileTheFilesSlotsAreTaken(t *testing.T) {
	s, url, _ := startSize(t, Config{AllowedIPs: []string{"127.0.0.1"}, MaxTransfers: 1}, 64<<20)
	base := strings.TrimSuffix(url, "abc.gz")
	if code, _ := get(t, base+"t.json", nil); code != http.StatusNotFound {
		t.Fatalf("a document not served yet got %d, want 404", code)
	}
	for _, bad := range []string{"", "abc.gz", "a/b"} {
		if err := s.ServeBytes(bad, []byte("x")); err == nil {
			t.Errorf("ServeBytes(%q) accepted", bad)
		}
	}
	doc := []byte(`[{"digest":"sha256:aa","torrent":"ZA=="}]`)
	if err := s.ServeBytes("t.json", doc); err != nil {
		t.Fatal(err)
	}
	holdSlot(t, s)
	if code, _ := get(t, url, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("the file's second transfer got %d, want 503", code)
	}
	code, got := get(t, base+"t.json", nil)
	if code != http.StatusOK || !bytes.Equal(got, doc) {
		t.Fatalf("document: %d %q, want 200 and what was served", code, got)
	}
	if st := s.Stats(); st.DocBytes != int64(len(doc)) {
		t.Errorf("stats %+v, want %d document bytes", st, len(doc))
	}
}

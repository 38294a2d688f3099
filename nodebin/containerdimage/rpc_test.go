package containerdimage

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

func TestMsg_EncodesAndDecodesFields(t *testing.T) {
	var m msg
	m.str(1, "sha256:ab")
	m.varint(3, 300)
	m.str(4, "") // left out
	m.boolean(5, true)
	m.strMap(7, map[string]string{"b": "2", "a": "1"})
	m.fieldMask(8, []string{"labels.x"})
	// Field 1 (string): tag 0x0a, length 9.
	if m[0] != 0x0a || m[1] != 9 || string(m[2:11]) != "sha256:ab" {
		t.Fatalf("field 1 encoded as % x", m[:11])
	}
	labels := map[string]string{}
	var got struct {
		s       string
		v       uint64
		b       bool
		mask    []byte
		unknown int
	}
	err := fields(m, func(num int, v uint64, data []byte) error {
		switch num {
		case 1:
			got.s = string(data)
		case 3:
			got.v = v
		case 5:
			got.b = v == 1
		case 7:
			return mapEntry(data, labels)
		case 8:
			got.mask = data
		default:
			got.unknown++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.s != "sha256:ab" || got.v != 300 || !got.b || got.unknown != 0 || labels["a"] != "1" || labels["b"] != "2" || len(labels) != 2 {
		t.Errorf("decoded %+v, labels %v", got, labels)
	}
	if p, err := only(got.mask, 1); err != nil || string(p) != "labels.x" {
		t.Errorf("field mask path %q, %v", p, err)
	}
}

func TestFields_RejectsTruncatedMessages(t *testing.T) {
	var m msg
	m.str(1, "hello")
	if err := fields(m[:len(m)-1], func(int, uint64, []byte) error { return nil }); !errors.Is(err, errWire) {
		t.Errorf("truncated message: %v", err)
	}
}

func TestDescriptor_RoundTrips(t *testing.T) {
	d := descriptor{MediaType: MediaTypeLayerGz, Digest: "sha256:00", Size: 1 << 40}
	got, err := decodeDescriptor(d.encode())
	if err != nil || got != d {
		t.Errorf("got %+v, %v; want %+v", got, err, d)
	}
}

// grpcServer serves handler as an h2c server on a unix socket and returns
// a conn to it.
func grpcServer(t *testing.T, handler http.HandlerFunc) *conn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: handler, Protocols: &protos}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c := dial(sock)
	t.Cleanup(c.close)
	return c
}

func writeFrame(w http.ResponseWriter, m []byte) {
	var hdr [5]byte
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(m)))
	w.Write(hdr[:])
	w.Write(m)
}

func TestConn_UnaryAnswersAndStatuses(t *testing.T) {
	c := grpcServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(body) < 5 || r.Header.Get("Content-Type") != "application/grpc" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
			var m msg
			m.str(1, r.Header.Get("Containerd-Namespace")+"/"+r.Header.Get("Containerd-Lease"))
			writeFrame(w, m)
			w.Header().Set("Grpc-Status", "0")
		case "/notfound":
			// Trailers-only: the status in the headers.
			w.Header().Set("Grpc-Status", "5")
			w.Header().Set("Grpc-Message", "content%20sha256:00%20not%20found")
			w.WriteHeader(http.StatusOK)
		case "/exists":
			w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
			w.WriteHeader(http.StatusOK)
			w.Header().Set("Grpc-Status", "6")
			w.Header().Set("Grpc-Message", "already exists")
		}
	})
	ctx := withMeta(context.Background(), callMeta{namespace: "k8s.io", lease: "l1"})
	b, err := c.unary(ctx, "/ok", nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := only(b, 1); string(v) != "k8s.io/l1" {
		t.Errorf("answer %q, want the namespace and lease headers", v)
	}
	if _, err := c.unary(ctx, "/notfound", nil); !isNotFound(err) || err.Error() != "content sha256:00 not found" {
		t.Errorf("trailers-only status: %v (code %d)", err, statusCode(err))
	}
	if _, err := c.unary(ctx, "/exists", nil); !isAlreadyExists(err) {
		t.Errorf("status in trailers: %v (code %d)", err, statusCode(err))
	}
}

func TestConn_NoDaemonIsUnavailable(t *testing.T) {
	c := dial(filepath.Join(t.TempDir(), "missing.sock"))
	defer c.close()
	_, err := c.unary(context.Background(), "/containerd.services.version.v1.Version/Version", nil)
	if statusCode(err) != codeUnavailable || !transient(err) {
		t.Errorf("call to a missing socket: %v (code %d), want unavailable", err, statusCode(err))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if _, err := c.unary(ctx, "/x", nil); statusCode(err) != codeDeadlineExceeded {
		t.Errorf("call past its deadline: %v (code %d)", err, statusCode(err))
	}
}

func TestStream_BidiRoundTrips(t *testing.T) {
	c := grpcServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.EnableFullDuplex()
		var hdr [5]byte
		for {
			if _, err := io.ReadFull(r.Body, hdr[:]); err != nil {
				break
			}
			m := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
			io.ReadFull(r.Body, m)
			writeFrame(w, append(m, '!'))
			rc.Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	})
	s := c.call(context.Background(), "/echo", nil)
	defer s.close()
	for _, m := range []string{"a", "bc"} {
		if err := s.send([]byte(m)); err != nil {
			t.Fatal(err)
		}
		got, err := s.recv()
		if err != nil || string(got) != m+"!" {
			t.Fatalf("echo of %q: %q, %v", m, got, err)
		}
	}
	s.closeSend()
	if _, err := s.recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last answer: %v, want EOF", err)
	}
}

package containerdimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// A gRPC client made of Go's own HTTP/2 client: containerd serves gRPC on a
// unix socket in cleartext, and a gRPC call is an HTTP/2 POST of
// length-prefixed protobuf messages whose status comes in the trailers (or
// in the headers, when the call fails before any answer). This keeps the
// gRPC and protobuf runtimes, about 1.6 MB of the compressed node binary,
// out of it.

// gRPC status codes the importer tells apart.
const (
	codeOK                 = 0
	codeCanceled           = 1
	codeDeadlineExceeded   = 4
	codeNotFound           = 5
	codeAlreadyExists      = 6
	codeFailedPrecondition = 9
	codeUnavailable        = 14
)

// maxMessage bounds one message from containerd (its own limit is 16 MiB).
const maxMessage = 16 << 20

// rpcError is a call's gRPC status other than OK.
type rpcError struct {
	code int
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

// statusCode is err's gRPC status code: codeOK for nil, codeUnavailable for
// a connection that failed, codeDeadlineExceeded for a call that timed out.
func statusCode(err error) int {
	var re *rpcError
	switch {
	case err == nil:
		return codeOK
	case errors.As(err, &re):
		return re.code
	case errors.Is(err, context.DeadlineExceeded):
		return codeDeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codeCanceled
	}
	return codeUnavailable
}

func isNotFound(err error) bool      { return statusCode(err) == codeNotFound }
func isAlreadyExists(err error) bool { return statusCode(err) == codeAlreadyExists }

// callMeta is the metadata containerd reads from a call's headers.
type callMeta struct{ namespace, lease string }

type metaKey struct{}

func withMeta(ctx context.Context, m callMeta) context.Context {
	return context.WithValue(ctx, metaKey{}, m)
}

// conn is a connection to containerd's gRPC socket.
type conn struct {
	hc *http.Client
	tr *http.Transport
}

func dial(socket string) *conn {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &conn{hc: &http.Client{Transport: tr}, tr: tr}
}

func (c *conn) close() { c.tr.CloseIdleConnections() }

// frame is one length-prefixed gRPC message.
func frame(m []byte) []byte {
	b := make([]byte, 5, 5+len(m))
	binary.BigEndian.PutUint32(b[1:], uint32(len(m)))
	return append(b, m...)
}

// stream is one call: the request body the caller writes messages into
// and the response it reads them from.
type stream struct {
	method string
	body   *io.PipeWriter // nil for a call whose request was sent whole
	resp   *http.Response
	done   chan struct{} // closed when resp or err is set
	err    error
	once   sync.Once
}

// call starts method ("/containerd.services.content.v1.Content/Write").
// With req set the request is that one message; otherwise the caller sends
// messages with send and ends them with closeSend.
func (c *conn) call(ctx context.Context, method string, req []byte) *stream {
	s := &stream{method: method, done: make(chan struct{})}
	var body io.Reader
	if req != nil {
		body = bytes.NewReader(frame(req))
	} else {
		pr, pw := io.Pipe()
		body, s.body = pr, pw
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://containerd"+method, body)
	if err != nil {
		s.err = err
		close(s.done)
		return s
	}
	hr.Header.Set("Content-Type", "application/grpc")
	hr.Header.Set("Te", "trailers")
	if m, ok := ctx.Value(metaKey{}).(callMeta); ok {
		if m.namespace != "" {
			hr.Header.Set("Containerd-Namespace", m.namespace)
		}
		if m.lease != "" {
			hr.Header.Set("Containerd-Lease", m.lease)
		}
	}
	go func() {
		defer close(s.done)
		resp, err := c.hc.Do(hr)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) && ctx.Err() == nil {
				// The socket is gone or the connection broke.
				err = &rpcError{code: codeUnavailable, msg: fmt.Sprintf("%s: %v", strings.TrimPrefix(method, "/containerd.services."), ue.Err)}
			}
			s.err = err
			return
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			s.err = &rpcError{code: codeUnavailable, msg: fmt.Sprintf("%s: HTTP status %s", method, resp.Status)}
			return
		}
		s.resp = resp
	}()
	return s
}

// send writes one message of a streaming request.
func (s *stream) send(m []byte) error {
	_, err := s.body.Write(frame(m))
	if err != nil {
		// The call ended; its status says why.
		if _, rerr := s.recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

func (s *stream) closeSend() {
	if s.body != nil {
		s.body.Close()
	}
}

// recv reads the next message; io.EOF after the last one of a call that
// succeeded, the call's status error otherwise.
func (s *stream) recv() ([]byte, error) {
	<-s.done
	if s.err != nil {
		return nil, s.err
	}
	var hdr [5]byte
	if _, err := io.ReadFull(s.resp.Body, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, s.status()
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if hdr[0] != 0 {
		return nil, fmt.Errorf("%s: compressed message", s.method)
	}
	if n > maxMessage {
		return nil, fmt.Errorf("%s: message of %d bytes", s.method, n)
	}
	m := make([]byte, n)
	if _, err := io.ReadFull(s.resp.Body, m); err != nil {
		return nil, err
	}
	return m, nil
}

// status is the call's end: io.EOF when it succeeded, its error otherwise.
func (s *stream) status() error {
	st, msg := s.resp.Trailer.Get("Grpc-Status"), s.resp.Trailer.Get("Grpc-Message")
	if st == "" {
		// A call that failed at once answers with headers only.
		st, msg = s.resp.Header.Get("Grpc-Status"), s.resp.Header.Get("Grpc-Message")
	}
	code, err := strconv.Atoi(st)
	if err != nil {
		return &rpcError{code: codeUnavailable, msg: fmt.Sprintf("%s: no gRPC status", s.method)}
	}
	if code == codeOK {
		return io.EOF
	}
	if m, err := url.PathUnescape(msg); err == nil {
		msg = m
	}
	return &rpcError{code: code, msg: strings.TrimSpace(msg)}
}

// close ends the call, whatever state it is in.
func (s *stream) close() {
	s.once.Do(func() {
		s.closeSend()
		<-s.done
		if s.resp != nil {
			s.resp.Body.Close()
		}
	})
}

// unary makes a call with one request and one response message.
func (c *conn) unary(ctx context.Context, method string, req []byte) ([]byte, error) {
	if req == nil {
		req = []byte{}
	}
	s := c.call(ctx, method, req)
	defer s.close()
	m, err := s.recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no answer", method)
		}
		return nil, callErr(ctx, err)
	}
	// The status follows the answer.
	switch _, err := s.recv(); {
	case err == nil:
		return nil, fmt.Errorf("%s: more than one answer", method)
	case !errors.Is(err, io.EOF):
		return nil, callErr(ctx, err)
	}
	return m, nil
}

// callErr prefers the context's error over the transport's for a call
// that ended because ctx did.
func callErr(ctx context.Context, err error) error {
	if ctx.Err() != nil && statusCode(err) == codeUnavailable {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

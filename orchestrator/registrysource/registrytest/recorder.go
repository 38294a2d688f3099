package registrytest

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// ErrCut is the error a cut response body ends with.
var ErrCut = errors.New("registrytest: connection cut")

// Recorder is an http.RoundTripper that records the requests through it,
// counts the body bytes each answer delivered, and can cut answers short or
// drop their Range header, to test what a client transfers and resumes.
type Recorder struct {
	Next http.RoundTripper
	// Cut, when set, is asked about every request: a positive n makes the
	// answer's body fail with ErrCut after n bytes.
	Cut func(*http.Request) int64
	// StripRange drops the Range header, as a registry that ignores it.
	StripRange atomic.Bool

	mu   sync.Mutex
	reqs []*Request
}

// Request is one recorded request and what its answer delivered.
type Request struct {
	Method, Path, Range string
	Status              int
	bytes               atomic.Int64
}

// Bytes is how many body bytes the client read from the answer.
func (r *Request) Bytes() int64 { return r.bytes.Load() }

// Blob reports whether the request fetched a blob.
func (r *Request) Blob() bool {
	return r.Method == http.MethodGet && strings.Contains(r.Path, "/blobs/")
}

// Manifest reports whether the request fetched a manifest.
func (r *Request) Manifest() bool { return strings.Contains(r.Path, "/manifests/") }

func (rec *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if rec.StripRange.Load() && req.Header.Get("Range") != "" {
		req = req.Clone(req.Context())
		req.Header.Del("Range")
	}
	r := &Request{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range")}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, r)
	rec.mu.Unlock()
	next := rec.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.Status = resp.StatusCode
	limit := int64(-1)
	if rec.Cut != nil {
		if n := rec.Cut(req); n > 0 {
			limit = n
		}
	}
	resp.Body = &countingBody{rc: resp.Body, r: r, limit: limit}
	return resp, nil
}

// Requests returns the requests so far.
func (rec *Recorder) Requests() []*Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*Request(nil), rec.reqs...)
}

// Reset forgets the requests so far.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	rec.reqs = nil
	rec.mu.Unlock()
}

type countingBody struct {
	rc    io.ReadCloser
	r     *Request
	limit int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.limit >= 0 {
		left := b.limit - b.r.bytes.Load()
		if left <= 0 {
			return 0, ErrCut
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := b.rc.Read(p)
	b.r.bytes.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

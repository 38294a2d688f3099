package registrysource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/layercast/layercast/internal/ctxio"
	"github.com/layercast/layercast/orchestrator/imagecache"
)

// maxStalls is how many attempts in a row may end without a new byte
// before a blob download gives up.
const maxStalls = 3

// fetchBlob downloads the blob of digest into the cache unless it is there.
// It writes to the blob's partial file and continues it with a Range
// request: after a dropped connection within this call, and in a later call
// after this one failed or was cancelled. A registry that ignores the range
// or a partial file that does not match the digest restarts the blob from
// its first byte.
func (ss *session) fetchBlob(ctx context.Context, digest string, size int64) error {
	p, err := ss.s.cache.OpenPartial(ctx, digest, size)
	if errors.Is(err, imagecache.ErrHaveBlob) {
		return nil
	}
	if err != nil {
		return err
	}
	defer p.Close()
	stalls, restartedBad := 0, false
	for {
		before := p.Offset()
		err := ss.download(ctx, digest, size, p)
		if err == nil {
			err = p.Commit()
			if errors.Is(err, imagecache.ErrDigestMismatch) && before > 0 && !restartedBad {
				// The bytes kept from an earlier attempt were bad;
				// Commit emptied the file: start over once.
				ss.s.opts.Log.Warn("partial blob did not match its digest; downloading it again", "digest", digest)
				restartedBad = true
				continue
			}
			return err
		}
		var perm permanentError
		if errors.As(err, &perm) || ctx.Err() != nil {
			return err
		}
		if p.Offset() > before {
			stalls = 0
		} else if stalls++; stalls >= maxStalls {
			return err
		}
		ss.s.opts.Log.Info("blob download interrupted; continuing", "digest", digest, "at", p.Offset(), "of", size, "err", err)
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Duration(stalls) * 500 * time.Millisecond):
		}
	}
}

// permanentError is a registry answer that retrying will not change.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// download appends the rest of the blob to p, from p.Offset().
func (ss *session) download(ctx context.Context, digest string, size int64, p *imagecache.Partial) error {
	off := p.Offset()
	if off == size {
		return nil
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", ss.repo.Scheme(), ss.repo.RegistryStr(), ss.repo.RepositoryStr(), digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return permanentError{err}
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := ss.client.Do(req)
	if err != nil {
		return fmt.Errorf("get blob: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if off > 0 {
			ss.s.opts.Log.Info("registry ignored the range; downloading the blob from its start", "digest", digest)
			if err := p.Restart(); err != nil {
				return permanentError{err}
			}
		}
	case http.StatusPartialContent:
		if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != off {
			if err := p.Restart(); err != nil {
				return permanentError{err}
			}
			return fmt.Errorf("registry answered range %q to a request from byte %d", resp.Header.Get("Content-Range"), off)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if err := p.Restart(); err != nil {
			return permanentError{err}
		}
		return errors.New("registry refused the range; downloading from the start")
	default:
		err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent)
		cerr := ss.classify("get blob "+digest, err)
		var te *transport.Error
		if errors.As(err, &te) && te.Temporary() {
			return cerr
		}
		return permanentError{cerr}
	}
	_, err = io.CopyBuffer(p, ctxio.Reader(ctx, resp.Body), make([]byte, 256<<10))
	if err != nil {
		var perm permanentError
		if errors.Is(err, imagecache.ErrDigestMismatch) {
			return permanentError{err}
		}
		if errors.As(err, &perm) {
			return err
		}
		return fmt.Errorf("read blob: %w", err)
	}
	return nil
}

// rangeStart reads the first byte position of "bytes START-END/TOTAL".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	first, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(first, 10, 64)
	return n, err == nil
}

// classify turns a registry's refusal into one line that says what to fix,
// wrapping the sentinel the operator's mistake maps to; other errors are
// wrapped with what was being done.
func (ss *session) classify(doing string, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return fmt.Errorf("%s: %s: %w", ss.ref, doing, err)
	}
	codes := map[transport.ErrorCode]bool{}
	for _, d := range te.Errors {
		codes[d.Code] = true
	}
	reg, repo := ss.repo.RegistryStr(), ss.repo.RepositoryStr()
	switch {
	case codes[transport.NameUnknownErrorCode]:
		return fmt.Errorf("%w: %s: registry %s has no repository %s", imagecache.ErrNoImage, ss.ref, reg, repo)
	case codes[transport.ManifestUnknownErrorCode]:
		return fmt.Errorf("%w: %s: repository %s at %s has no such tag or digest", imagecache.ErrNoImage, ss.ref, repo, reg)
	case codes[transport.UnauthorizedErrorCode], codes[transport.DeniedErrorCode],
		te.StatusCode == http.StatusUnauthorized, te.StatusCode == http.StatusForbidden:
		if ss.anon {
			return fmt.Errorf("%w: %s: registry %s wants credentials for %s and the bastion's Docker config has none for it (docker login %s)", ErrDenied, ss.ref, reg, repo, reg)
		}
		return fmt.Errorf("%w: %s: registry %s refused the bastion's credentials for %s (check docker login %s)", ErrDenied, ss.ref, reg, repo, reg)
	case te.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s: %s answered 404 Not Found", imagecache.ErrNoImage, ss.ref, reg)
	}
	return fmt.Errorf("%s: %s: %w", ss.ref, doing, err)
}

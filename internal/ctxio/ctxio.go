// Package ctxio makes a reader stop once its context is done, for copies
// that have no context of their own (io.Copy into an archive, a hash, a
// compressor). Both the bastion and the node binary use it.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r that fails with ctx's error once ctx is done; a read
// already in progress is not interrupted.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package openssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pkg/sftp"
)

// sftpClient opens the connection's one SFTP client on first use.
func (c *Client) sftpClient() (*sftp.Client, error) {
	c.sftpMu.Lock()
	defer c.sftpMu.Unlock()
	select {
	case <-c.closed:
		return nil, errors.New("connection closed")
	default:
	}
	if c.sftp != nil {
		return c.sftp, nil
	}
	sc, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, c.sessionErr("open sftp", err)
	}
	c.sftp = sc
	return sc, nil
}

// WriteFile writes data to a new file at p over the connection's SFTP
// client; a file already there is an error. On failure the file is
// removed.
func (c *Client) WriteFile(ctx context.Context, p string, data []byte) (err error) {
	sc, err := c.sftpClient()
	if err != nil {
		return err
	}
	f, err := sc.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	defer func() {
		if err != nil {
			_ = sc.Remove(p)
		}
	}()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, werr := f.ReadFrom(&ctxReader{ctx: ctx, r: bytes.NewReader(data), n: len(data)})
	stop()
	cerr := f.Close()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", p, werr)
	}
	if cerr != nil {
		return fmt.Errorf("close %s: %w", p, cerr)
	}
	return nil
}

// ctxReader ends a copy when ctx ends. Len lets the SFTP client see the
// size and keep many writes in flight; without it every 32 KiB write waits
// for its answer.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	n    int
	read int
}

func (r *ctxReader) Len() int { return r.n - r.read }

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := r.r.Read(p)
	r.read += n
	return n, err
}

package swarm

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/anacrolix/torrent"
)

// On a paced link a peer's data arrives a packet at a time, and a reader
// blocked on the socket is woken for each one: at 8 Mbit/s a node was
// woken about 700 times a second per stream to read 1.4 KB, and that
// wake-up (scheduler, epoll, a read syscall, anacrolix's decoder resuming)
// cost it more than the bytes themselves: 28 CPU-s per GB received against
// 7 at 200 Mbit/s, where each read returns tens of KB (docs/BENCHMARKS.md).
// So a connection whose last read returned less than readBatch waits before
// it reads again, about the time its recent rate takes to bring readBatch
// bytes, at most maxReadPause; the kernel gathers the packets meanwhile.
// Reads of readBatch or more never wait, so a fast link is read as before.
// readBatch is far below the socket's receive buffer (Linux starts at 128
// KiB), so the sender is never held up by the window: the rate is
// unchanged, only the wake-ups fall. A message is at most maxReadPause late,
// far inside every timing of the swarm (the seeder's shortest is 500 ms).
const (
	readBatch    = 16 << 10
	maxReadPause = 50 * time.Millisecond
	// rateWindow is how long a connection's receive rate is measured over.
	rateWindow = time.Second
)

// readPause is how long to wait before a read after one that returned last
// bytes, on a connection receiving about rate bytes/s.
func readPause(last int, rate float64) time.Duration {
	if last >= readBatch {
		return 0
	}
	if rate <= 0 {
		return maxReadPause
	}
	return min(time.Duration(float64(readBatch)/rate*float64(time.Second)), maxReadPause)
}

// batchedConn is a peer connection read in batches (see readBatch). Only
// anacrolix's one reader goroutine per connection calls Read.
type batchedConn struct {
	net.Conn
	last      int       // bytes the previous read returned
	mark      time.Time // start of the current rate window
	got       int64     // bytes read since mark
	rate      float64   // bytes/s over the previous window
	pauseFunc func(time.Duration)
}

func newBatchedConn(nc net.Conn) *batchedConn {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetLinger(0) // as anacrolix does for its own TCP connections
	}
	return &batchedConn{Conn: nc, mark: time.Now(), pauseFunc: time.Sleep}
}

func (c *batchedConn) Read(b []byte) (int, error) {
	if d := readPause(c.last, c.rate); d > 0 && c.last > 0 {
		c.pauseFunc(d)
	}
	n, err := c.Conn.Read(b)
	c.last = n
	c.got += int64(n)
	if now := time.Now(); now.Sub(c.mark) >= rateWindow {
		c.rate = float64(c.got) / now.Sub(c.mark).Seconds()
		c.mark, c.got = now, 0
	}
	return n, err
}

// batchedListener hands anacrolix its accepted connections as batchedConns.
type batchedListener struct{ net.Listener }

func (l batchedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newBatchedConn(nc), nil
}

// batchedDialer dials peers over IPv4 TCP and returns batchedConns.
type batchedDialer struct{ d net.Dialer }

func (d *batchedDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	nc, err := d.d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return nil, err
	}
	return newBatchedConn(nc), nil
}

func (*batchedDialer) DialerNetwork() string { return "tcp4" }

// addBatchedTCP gives cl its TCP listener on port (0: any) and its dialer,
// both reading in batches; cl's config must have DisableTCP set. The
// listener closes with stop.
func addBatchedTCP(cl *torrent.Client, port int) (stop func() error, err error) {
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen for peers on port %d: %w", port, err)
	}
	cl.AddListener(batchedListener{ln})
	// BitTorrent keeps its own keepalives.
	cl.AddDialer(&batchedDialer{d: net.Dialer{KeepAlive: -1}})
	return ln.Close, nil
}

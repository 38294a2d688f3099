package swarm

import (
	"net"
	"testing"
	"time"
)

func TestReadPause_GathersAboutABatchAtTheRecentRate(t *testing.T) {
	for _, tc := range []struct {
		last int
		rate float64
		want time.Duration
	}{
		{readBatch, 1 << 20, 0},                    // a full read: read on at once
		{64 << 10, 0, 0},                           // more than a batch
		{1448, 1 << 20, 15625 * time.Microsecond},  // 16 KiB at 1 MiB/s
		{1448, 8 << 20, 1953125 * time.Nanosecond}, // a fast link waits little
		{1448, 100 << 10, maxReadPause},            // a slow one at most maxReadPause
		{1448, 0, maxReadPause},                    // no rate known yet
	} {
		if got := readPause(tc.last, tc.rate); got != tc.want {
			t.Errorf("readPause(%d, %.0f) = %v, want %v", tc.last, tc.rate, got, tc.want)
		}
	}
}

// scriptedConn returns reads of the given sizes.
type scriptedConn struct {
	net.Conn
	sizes []int
}

func (c *scriptedConn) Read(b []byte) (int, error) {
	n := c.sizes[0]
	c.sizes = c.sizes[1:]
	return n, nil
}

func TestBatchedConn_WaitsOnlyAfterASmallRead(t *testing.T) {
	var pauses []time.Duration
	c := newBatchedConn(&scriptedConn{sizes: []int{1448, 1448, 64 << 10, 1448, 1448}})
	c.pauseFunc = func(d time.Duration) { pauses = append(pauses, d) }
	buf := make([]byte, 128<<10)
	var waitedBefore []bool
	for range 5 {
		before := len(pauses)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		waitedBefore = append(waitedBefore, len(pauses) > before)
	}
	// The first read has no previous one; the third and fifth follow small
	// reads; the fourth follows a full one.
	want := []bool{false, true, true, false, true}
	for i := range want {
		if waitedBefore[i] != want[i] {
			t.Errorf("read %d waited %v, want %v (pauses %v)", i, waitedBefore[i], want[i], pauses)
		}
	}
	for _, d := range pauses {
		if d <= 0 || d > maxReadPause {
			t.Errorf("pause %v outside (0, %v]", d, maxReadPause)
		}
	}
}

package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// Connection timings.
const (
	handshakeTimeout = 10 * time.Second
	// readTimeout closes a connection that sent nothing, not even a
	// keepalive, for this long (BEP 3 peers send one every 2 minutes).
	readTimeout = 3 * time.Minute
	// keepaliveEvery is how long the writer stays silent before it sends a
	// keepalive (anacrolix drops a peer silent for 150 s).
	keepaliveEvery = time.Minute
	// writeTimeout bounds one write: a peer that stops reading is dropped.
	writeTimeout = 30 * time.Second
)

// errPeerComplete ends a connection whose peer has every piece: a seeder
// has nothing to give it, and it needs nothing from a seeder.
var errPeerComplete = errors.New("peer has every piece")

// conn is one peer's connection for one torrent: a reader goroutine that
// handles what the peer sends, and a writer goroutine that sends control
// messages and, one at a time, the blocks the policy agreed to serve.
type conn struct {
	s    *Seeder
	t    *torrent
	nc   *net.TCPConn
	file *os.File // this connection's own descriptor: sendfile reads at its offset
	fast bool
	log  *slog.Logger
	peer *peer // the policy's handle; guarded by t.mu
	// ctx ends when the connection closes (close) or the seeder does:
	// what its writer waits for stops waiting.
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	queue requestQueue // served requests waiting for the writer
	held  requestQueue // requests the policy holds (see policy)
	ctrl  []byte       // encoded messages waiting for the writer
	cur   request      // the block the writer has taken
	state writerState
	// stopWait ends the writer's waits for cur (a pause, a sending slot,
	// the rate budget) when the peer cancels it.
	stopWait context.CancelFunc
	// sendingSince is when the writer started sending cur (writerSending).
	sendingSince time.Time
	// unreachable: the seeder dropped the connection because the peer
	// acknowledged nothing for deadAfter (see Seeder.dropUnreachable).
	unreachable bool

	wake      chan struct{} // capacity 1: "something to write"
	closeOnce sync.Once
}

// writerState is where the writer is with the block it took.
type writerState int

const (
	writerIdle      writerState = iota
	writerWaiting               // for a pause, a slot or the rate: a cancel stops it
	writerCancelled             // cancelled while waiting
	writerSending
)

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.nc.Close()
	})
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queueCtrl queues a small message for the writer.
func (c *conn) queueCtrl(b []byte) {
	c.mu.Lock()
	c.ctrl = append(c.ctrl, b...)
	c.mu.Unlock()
	c.signal()
}

// requestState tells the policy whether the connection has a served
// request pending (queued or being sent) and how many it holds. An
// anacrolix node with only held requests outstanding plans no more until
// something happens on the connection, so it counts as idle.
func (c *conn) requestState() connState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return connState{idle: c.queue.len() == 0 && c.state == writerIdle, held: c.held.len()}
}

// readLoop handles the peer's messages until it fails or the peer has
// everything.
func (c *conn) readLoop() error {
	l := c.t.layer
	r := newMsgReader(c.nc, max(1<<16, 1+(l.numPieces+7)/8))
	for {
		if err := c.nc.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
			return err
		}
		m, err := r.next()
		if err != nil {
			return err
		}
		if m.keepalive {
			continue
		}
		now := time.Now()
		complete := false
		switch m.id {
		case msgHave:
			if int64(m.index) >= int64(l.numPieces) {
				return fmt.Errorf("%w: have piece %d of %d", errProtocol, m.index, l.numPieces)
			}
			c.t.mu.Lock()
			complete = c.t.pol.have(c.peer, int(m.index), now)
			c.t.mu.Unlock()
		case msgBitfield:
			set, err := bitfieldPieces(m.payload, l.numPieces)
			if err != nil {
				return err
			}
			c.t.mu.Lock()
			for _, i := range set {
				complete = c.t.pol.have(c.peer, i, now)
			}
			c.t.mu.Unlock()
		case msgHaveAll:
			c.t.mu.Lock()
			c.t.pol.haveAll(c.peer, now)
			c.t.mu.Unlock()
			complete = true
		case msgInterested, msgNotInterested:
			c.t.mu.Lock()
			c.t.pol.setInterested(c.peer, m.id == msgInterested, now)
			c.t.mu.Unlock()
		case msgRequest:
			if err := c.onRequest(request{m.index, m.begin, m.length}, now); err != nil {
				return err
			}
		case msgCancel:
			c.onCancel(request{m.index, m.begin, m.length})
		case msgPiece:
			return fmt.Errorf("%w: sent a block to a seeder that asked for none", errProtocol)
		default:
			// choke, unchoke, have none, port, suggest, reject, allowed
			// fast, extensions: nothing for a seeder to do.
		}
		if complete {
			return errPeerComplete
		}
	}
}

func (c *conn) onRequest(r request, now time.Time) error {
	if err := checkRequest(r, c.t.layer); err != nil {
		return err
	}
	// Only the reader adds requests, so what it sees here can only shrink
	// before it adds one.
	c.mu.Lock()
	dup := c.queue.contains(r) || c.held.contains(r)
	full := c.queue.len()+c.held.len() >= maxQueued
	c.mu.Unlock()
	switch {
	case dup:
		return nil // a peer repeating itself gets one answer
	case full && !c.fast:
		return fmt.Errorf("request: %w", errQueueFull)
	case full:
		c.queueCtrl(appendBlockMsg(nil, msgReject, r))
		return nil
	}
	c.t.mu.Lock()
	v := c.t.pol.request(c.peer, int(r.index), now)
	c.t.mu.Unlock()
	c.mu.Lock()
	switch v {
	case serve:
		c.queue.push(r)
	case hold:
		c.held.push(r)
	default: // only peers with the fast extension are ever refused
		c.ctrl = appendBlockMsg(c.ctrl, msgReject, r)
	}
	c.mu.Unlock()
	if v != hold {
		c.signal()
	}
	return nil
}

// recheck asks the policy again about every held request.
func (c *conn) recheck(now time.Time) {
	c.mu.Lock()
	held := append([]request(nil), c.held.items...)
	c.mu.Unlock()
	if len(held) == 0 {
		return
	}
	verdicts := make([]verdict, len(held))
	c.t.mu.Lock()
	for i, r := range held {
		verdicts[i] = c.t.pol.request(c.peer, int(r.index), now)
	}
	c.t.mu.Unlock()
	var gone []request // served while the peer cancelled them
	changed := false
	c.mu.Lock()
	for i, r := range held {
		if verdicts[i] == hold {
			continue
		}
		if !c.held.cancel(r) {
			if verdicts[i] == serve {
				gone = append(gone, r)
			}
			continue
		}
		changed = true
		if verdicts[i] == serve {
			c.queue.push(r)
		} else {
			c.ctrl = appendBlockMsg(c.ctrl, msgReject, r)
		}
	}
	c.mu.Unlock()
	if len(gone) > 0 {
		c.t.mu.Lock()
		for _, r := range gone {
			c.t.pol.dropped(c.peer, r)
		}
		c.t.mu.Unlock()
	}
	if changed {
		c.signal()
	}
}

// onCancel drops a pending request. With the fast extension the peer waits
// for an answer to each cancel (BEP 6): a reject when the block was still
// pending; a block already being sent answers it by itself.
func (c *conn) onCancel(r request) {
	c.mu.Lock()
	served := c.queue.cancel(r)
	if !served && c.state == writerWaiting && c.cur == r {
		c.state = writerCancelled
		c.stopWait()
		served = true
	}
	held := !served && c.held.cancel(r)
	if (served || held) && c.fast {
		c.ctrl = appendBlockMsg(c.ctrl, msgReject, r)
	}
	c.mu.Unlock()
	if served {
		c.t.mu.Lock()
		c.t.pol.dropped(c.peer, r)
		c.t.mu.Unlock()
	}
	if served || held {
		c.signal()
	}
}

// writeLoop sends queued control messages as they come, the served blocks
// one at a time, and a keepalive when it has been silent for keepaliveEvery.
func (c *conn) writeLoop() error {
	keepalive := time.NewTimer(keepaliveEvery)
	defer keepalive.Stop()
	var buf []byte
	for {
		c.mu.Lock()
		buf = append(buf[:0], c.ctrl...)
		c.ctrl = c.ctrl[:0]
		r, ok := c.queue.pop()
		var wait context.Context
		var stop context.CancelFunc
		if ok {
			wait, stop = context.WithCancel(c.ctx)
			c.cur, c.state, c.stopWait = r, writerWaiting, stop
		}
		c.mu.Unlock()
		if len(buf) == 0 && !ok {
			select {
			case <-c.wake:
				continue
			case <-c.ctx.Done():
				return nil
			case <-keepalive.C:
				buf = appendKeepalive(buf)
			}
		}
		if len(buf) > 0 {
			if err := c.write(buf); err != nil {
				return err
			}
		}
		if ok {
			c.s.inHand.Add(1)
			err := c.sendBlock(wait, r)
			c.s.inHand.Add(-1)
			stop()
			if err != nil {
				return err
			}
		}
		keepalive.Reset(keepaliveEvery)
	}
}

// stale reports whether served request r is no longer worth sending
// (policy.stale); if so it is dropped from the policy's books.
func (c *conn) stale(r request) bool {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	if !c.t.pol.stale(c.peer, int(r.index)) {
		return false
	}
	c.t.pol.dropped(c.peer, r)
	return true
}

func (c *conn) write(b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	if _, err := c.nc.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// sendBlock sends the piece message for r once no Hold is in force, a
// sending slot is free (Config.MaxSending) and the rate limit allows it,
// the block itself with sendfile from the layer file. wait ends when the
// peer cancels r or the connection closes: the block then leaves every
// queue at once and spends none of the rate budget (Seeder.waitRate).
func (c *conn) sendBlock(wait context.Context, r request) error {
	stale := false
	err := c.s.waitUnheld(wait)
	if err == nil {
		if err = c.s.sending.Acquire(wait, 1); err == nil {
			defer c.s.sending.Release(1)
			if stale = c.stale(r); !stale {
				err = c.s.waitRate(wait, int(r.length))
			}
		}
	}
	c.mu.Lock()
	cancelled := c.state == writerCancelled
	c.state, c.sendingSince = writerSending, time.Now()
	if err != nil || cancelled || stale {
		c.state = writerIdle
	}
	c.mu.Unlock()
	switch {
	case cancelled:
		return nil
	case stale:
		// Only fast-extension peers have stale blocks (policy.stale): the
		// reject tells the node to ask elsewhere.
		c.s.withdrawn.Add(int64(r.length))
		c.queueCtrl(appendBlockMsg(nil, msgReject, r))
		return nil
	case err != nil && c.ctx.Err() != nil && c.s.ctx.Err() == nil:
		// The connection closed under the wait; its reader says why.
		return fmt.Errorf("wait to send a block: %w", net.ErrClosed)
	case err != nil:
		return fmt.Errorf("wait to send a block: %w", err)
	}
	defer func() {
		c.mu.Lock()
		c.state = writerIdle
		c.mu.Unlock()
	}()
	// Recorded before the block leaves: the peer may report the piece
	// before this goroutine runs again.
	// A peer this send takes below its cap on pieces waiting (policy.full)
	// gets its held requests decided again at once, not at the next tick.
	now := time.Now()
	c.t.mu.Lock()
	wasFull := c.t.pol.full(c.peer)
	resent, why := c.t.pol.sent(c.peer, r, now)
	freed := wasFull && !c.t.pol.full(c.peer)
	c.t.mu.Unlock()
	if resent > 0 {
		c.s.resent[why].Add(resent)
	}
	if freed {
		c.recheck(now)
	}
	off := int64(r.index)*c.t.layer.pieceLen + int64(r.begin)
	if _, err := c.file.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("seek layer file: %w", err)
	}
	if err := c.write(appendPieceHeader(nil, r)); err != nil {
		return err
	}
	n, err := c.nc.ReadFrom(&io.LimitedReader{R: c.file, N: int64(r.length)})
	if err == nil && n != int64(r.length) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("send block %d+%d of piece %d: %w", r.begin, r.length, r.index, err)
	}
	c.s.uploaded.Add(n)
	return nil
}

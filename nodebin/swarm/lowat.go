package swarm

import (
	"encoding/binary"
	"net"
	"syscall"

	"github.com/layercast/layercast/nodebin/sockopt"
)

// Reading a block in large pieces.
//
// A peer connection on a paced link brings a block a packet or two at a
// time, and anacrolix's reader wakes for each: the netpoller, the
// scheduler and a read system call per 1.4–3 KB. With 40 lab hosts at
// 3 Mbit/s that was half of the node's CPU (pprof over 40 nodes: 30 % in
// the peer read path, 22 % in the scheduler), 133 CPU-s per GB received.
//
// While the connection is inside a piece message, the bytes still to come
// of its block are certain to come: the peer wrote the length prefix, and
// it sends the rest or closes the connection. A read then need not return
// before min(those bytes, maxRcvLowat) are there, and the socket's
// SO_RCVLOWAT says so to the kernel: the reader wakes once per maxRcvLowat
// bytes of a block instead of once per packet. Between messages, where
// what comes next may be a 5-byte have, it is back to 1.
const (
	maxRcvLowat = 64 << 10
	// minRcvLowat is the least remainder of a block worth a system call
	// to wait for.
	minRcvLowat = 8 << 10
)

// handshakeLen is the plain BitTorrent handshake: its length byte (19),
// "BitTorrent protocol", 8 reserved bytes, the infohash and the peer ID.
const handshakeLen = 1 + 19 + 8 + 20 + 20

// maxFrameLen bounds a message length wireFrames believes: above it the
// stream is not the protocol it expects, and it stops following it.
const maxFrameLen = 16 << 20

// msgPiece is the peer wire protocol's piece message type.
const msgPiece = 7

// wireFrames follows the message framing of the bytes a peer connection
// reads: the handshake, then messages of a 4-byte big-endian length
// prefix, a type byte and a body, a piece message's body starting with
// the piece index and the block's offset (4 bytes each).
type wireFrames struct {
	handshake int      // handshake bytes not read yet
	head      [13]byte // length, type, and a piece's index and offset
	nhead     int      // bytes of head read
	body      int      // bytes of the message after head not read yet
	inPiece   bool     // body is a piece message's block
	lost      bool     // the stream is not the protocol; follow no more
}

func newWireFrames() wireFrames { return wireFrames{handshake: handshakeLen} }

// read follows b, the next bytes the connection read.
func (f *wireFrames) read(b []byte) {
	for len(b) > 0 && !f.lost {
		switch {
		case f.handshake > 0:
			if f.handshake == handshakeLen && b[0] != 19 {
				f.lost = true // encrypted or not BitTorrent
				return
			}
			k := min(f.handshake, len(b))
			f.handshake -= k
			b = b[k:]
		case f.body > 0:
			k := min(f.body, len(b))
			f.body -= k
			b = b[k:]
			if f.body == 0 {
				f.nhead, f.inPiece = 0, false
			}
		default:
			k := min(f.headLen()-f.nhead, len(b))
			copy(f.head[f.nhead:], b[:k])
			f.nhead += k
			b = b[k:]
			f.headRead()
		}
	}
}

// headLen is how many bytes of the current message head to read before
// its body: the length, then the type, then for a piece its index and
// offset.
func (f *wireFrames) headLen() int {
	switch {
	case f.nhead < 4:
		return 4
	case f.nhead < 5:
		return 5
	case f.head[4] == msgPiece:
		return 13
	default:
		return 5
	}
}

// headRead moves on to the body once the head is complete.
func (f *wireFrames) headRead() {
	if f.nhead < 4 {
		return
	}
	n := binary.BigEndian.Uint32(f.head[:4])
	switch {
	case n == 0: // keep-alive
		f.nhead = 0
		return
	case n > maxFrameLen || (f.nhead >= 5 && f.head[4] == msgPiece && n < 9):
		f.lost = true
		return
	case f.nhead < f.headLen():
		return
	}
	f.body = int(n) - (f.nhead - 4)
	f.inPiece = f.head[4] == msgPiece
	if f.body == 0 {
		f.nhead, f.inPiece = 0, false
	}
}

// blockLeft is how many bytes of the block being read are still to come,
// or 0 between blocks.
func (f *wireFrames) blockLeft() int {
	if f.inPiece {
		return f.body
	}
	return 0
}

// lowatConn is a peer connection whose socket's SO_RCVLOWAT follows the
// block being read (see maxRcvLowat). It is only a net.Conn, so that
// nothing reads the socket past its Read (io.WriterTo, splice).
type lowatConn struct {
	net.Conn
	raw    syscall.RawConn
	frames wireFrames
	lowat  int // the socket's SO_RCVLOWAT
}

// newLowatConn wraps c, a new peer connection. Where c is not a TCP socket
// or the option is not supported it returns c as it is. Like anacrolix
// for its own TCP connections, it drops unsent data on close (linger 0).
func newLowatConn(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	_ = tc.SetLinger(0)
	raw, err := tc.SyscallConn()
	if err != nil || sockopt.SetRcvLowat(raw, 1) != nil {
		return c
	}
	return &lowatConn{Conn: c, raw: raw, frames: newWireFrames(), lowat: 1}
}

// SyscallConn is the socket's, for its options.
func (c *lowatConn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

func (c *lowatConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && (!c.frames.lost || c.lowat != 1) {
		c.frames.read(p[:n])
		c.follow()
	}
	return n, err
}

// follow sets the socket's SO_RCVLOWAT for what the next read waits for:
// the rest of the block, up to maxRcvLowat, or 1. Once the stream is lost
// it is 1 for good. If the option cannot be set, reads could wait for
// bytes that never come, so the connection stops following; a socket
// that refuses an option is closed, and its reads fail anyway.
func (c *lowatConn) follow() {
	want := 1
	if left := c.frames.blockLeft(); !c.frames.lost && left >= minRcvLowat {
		want = min(left, maxRcvLowat)
	}
	if want == c.lowat {
		return
	}
	if err := sockopt.SetRcvLowat(c.raw, want); err != nil {
		c.frames.lost = true
		c.lowat = 1
		return
	}
	c.lowat = want
}

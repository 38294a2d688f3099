package seed

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The peer wire protocol (BEP 3) and its fast extension (BEP 6), as far as
// a seeder needs it: it reads handshakes and the messages a downloader
// sends, and writes the messages a seeder sends.

// Message IDs.
const (
	msgChoke         byte = 0
	msgUnchoke       byte = 1
	msgInterested    byte = 2
	msgNotInterested byte = 3
	msgHave          byte = 4
	msgBitfield      byte = 5
	msgRequest       byte = 6
	msgPiece         byte = 7
	msgCancel        byte = 8
	msgPort          byte = 9
	msgSuggest       byte = 13 // BEP 6
	msgHaveAll       byte = 14 // BEP 6
	msgHaveNone      byte = 15 // BEP 6
	msgReject        byte = 16 // BEP 6
	msgAllowedFast   byte = 17 // BEP 6
)

const (
	protocolName = "BitTorrent protocol"
	handshakeLen = 1 + len(protocolName) + 8 + 20 + 20
	// fastByte and fastBit locate the fast extension's reserved bit (BEP 6:
	// the third least significant bit of the last reserved byte).
	fastByte = 7
	fastBit  = 0x04
	// pieceHeaderLen is the length prefix, ID, index and begin of a piece
	// message, the part written before the block itself.
	pieceHeaderLen = 4 + 1 + 4 + 4
)

var errProtocol = errors.New("peer broke the wire protocol")

// handshake is the 68-byte greeting both sides send first.
type handshake struct {
	reserved [8]byte
	infoHash [20]byte
	peerID   [20]byte
}

func (h handshake) fast() bool { return h.reserved[fastByte]&fastBit != 0 }

// readHandshake reads a peer's handshake.
func readHandshake(r io.Reader) (handshake, error) {
	var b [handshakeLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return handshake{}, fmt.Errorf("read handshake: %w", err)
	}
	if int(b[0]) != len(protocolName) || string(b[1:1+len(protocolName)]) != protocolName {
		return handshake{}, fmt.Errorf("%w: handshake names another protocol", errProtocol)
	}
	var h handshake
	rest := b[1+len(protocolName):]
	copy(h.reserved[:], rest[:8])
	copy(h.infoHash[:], rest[8:28])
	copy(h.peerID[:], rest[28:48])
	return h, nil
}

func (h handshake) append(b []byte) []byte {
	b = append(b, byte(len(protocolName)))
	b = append(b, protocolName...)
	b = append(b, h.reserved[:]...)
	b = append(b, h.infoHash[:]...)
	return append(b, h.peerID[:]...)
}

// message is one message read from a peer. Payload aliases the reader's
// buffer and is valid until the next read.
type message struct {
	keepalive bool
	id        byte
	// index, begin and length are set for the messages that carry them
	// (have, request, cancel, reject, suggest, allowed fast: index only
	// where the message has no more).
	index, begin, length uint32
	payload              []byte // bitfield and messages without a fixed form
}

// fixedLen is the exact length (ID included) of each message with a fixed
// form; a message of such a type with another length is a protocol error.
var fixedLen = [...]int{
	msgChoke: 1, msgUnchoke: 1, msgInterested: 1, msgNotInterested: 1,
	msgHave: 5, msgRequest: 13, msgCancel: 13, msgPort: 3,
	msgSuggest: 5, msgHaveAll: 1, msgHaveNone: 1, msgReject: 13, msgAllowedFast: 5,
}

func fixedLength(id byte) (int, bool) {
	if int(id) < len(fixedLen) && fixedLen[id] != 0 {
		return fixedLen[id], true
	}
	return 0, false
}

// msgReader reads length-prefixed messages, refusing any longer than max.
type msgReader struct {
	r   *bufio.Reader
	buf []byte
	max int
}

func newMsgReader(r io.Reader, max int) *msgReader {
	return &msgReader{r: bufio.NewReaderSize(r, 4096), max: max}
}

// next reads one message.
func (m *msgReader) next() (message, error) {
	var lb [4]byte
	if _, err := io.ReadFull(m.r, lb[:]); err != nil {
		return message{}, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n == 0 {
		return message{keepalive: true}, nil
	}
	if n > uint32(m.max) {
		return message{}, fmt.Errorf("%w: message of %d bytes (at most %d)", errProtocol, n, m.max)
	}
	if cap(m.buf) < int(n) {
		m.buf = make([]byte, n)
	}
	b := m.buf[:n]
	if _, err := io.ReadFull(m.r, b); err != nil {
		return message{}, fmt.Errorf("read message body: %w", noEOF(err))
	}
	msg := message{id: b[0]}
	if want, ok := fixedLength(msg.id); ok && int(n) != want {
		return message{}, fmt.Errorf("%w: message %d of %d bytes, want %d", errProtocol, msg.id, n, want)
	}
	switch msg.id {
	case msgHave, msgSuggest, msgAllowedFast:
		msg.index = binary.BigEndian.Uint32(b[1:])
	case msgRequest, msgCancel, msgReject:
		msg.index = binary.BigEndian.Uint32(b[1:])
		msg.begin = binary.BigEndian.Uint32(b[5:])
		msg.length = binary.BigEndian.Uint32(b[9:])
	default:
		msg.payload = b[1:]
	}
	return msg, nil
}

// noEOF turns an EOF inside a message into ErrUnexpectedEOF.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func appendKeepalive(b []byte) []byte { return append(b, 0, 0, 0, 0) }

// appendSimple appends a message that is only its ID (choke, unchoke,
// have all, have none, ...).
func appendSimple(b []byte, id byte) []byte { return append(b, 0, 0, 0, 1, id) }

// appendIndex appends a message carrying one piece index (have, suggest,
// allowed fast).
func appendIndex(b []byte, id byte, index uint32) []byte {
	b = append(b, 0, 0, 0, 5, id)
	return binary.BigEndian.AppendUint32(b, index)
}

// appendBlockMsg appends a request, cancel or reject.
func appendBlockMsg(b []byte, id byte, r request) []byte {
	b = append(b, 0, 0, 0, 13, id)
	b = binary.BigEndian.AppendUint32(b, r.index)
	b = binary.BigEndian.AppendUint32(b, r.begin)
	return binary.BigEndian.AppendUint32(b, r.length)
}

// appendBitfield appends a bitfield of numPieces pieces, all set.
func appendFullBitfield(b []byte, numPieces int) []byte {
	n := (numPieces + 7) / 8
	b = binary.BigEndian.AppendUint32(b, uint32(1+n))
	b = append(b, msgBitfield)
	for i := 0; i < n; i++ {
		bits := 8
		if i == n-1 && numPieces%8 != 0 {
			bits = numPieces % 8
		}
		b = append(b, byte(0xff<<(8-bits)))
	}
	return b
}

// appendPieceHeader appends the part of a piece message before the block of
// r.length bytes that follows it.
func appendPieceHeader(b []byte, r request) []byte {
	b = binary.BigEndian.AppendUint32(b, 9+r.length)
	b = append(b, msgPiece)
	b = binary.BigEndian.AppendUint32(b, r.index)
	return binary.BigEndian.AppendUint32(b, r.begin)
}

// bitfieldPieces returns the pieces set in a bitfield of numPieces pieces;
// it refuses one of the wrong length or with spare bits set (BEP 3).
func bitfieldPieces(bf []byte, numPieces int) ([]int, error) {
	if len(bf) != (numPieces+7)/8 {
		return nil, fmt.Errorf("%w: bitfield of %d bytes for %d pieces", errProtocol, len(bf), numPieces)
	}
	var set []int
	for i, x := range bf {
		for j := 0; j < 8 && x != 0; j++ {
			if x&(0x80>>j) == 0 {
				continue
			}
			p := i*8 + j
			if p >= numPieces {
				return nil, fmt.Errorf("%w: bitfield sets spare bits", errProtocol)
			}
			set = append(set, p)
		}
	}
	return set, nil
}

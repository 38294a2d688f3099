package seed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"testing"
)

func TestHandshake_RoundTrips(t *testing.T) {
	h := handshake{infoHash: [20]byte{1, 2, 3}, peerID: [20]byte{'-', 'X'}}
	h.reserved[fastByte] |= fastBit
	b := h.append(nil)
	if len(b) != handshakeLen {
		t.Fatalf("handshake of %d bytes", len(b))
	}
	got, err := readHandshake(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if got != h || !got.fast() {
		t.Errorf("read %+v, want %+v", got, h)
	}
	b[5] = 'X'
	if _, err := readHandshake(bytes.NewReader(b)); !errors.Is(err, errProtocol) {
		t.Errorf("other protocol: err %v", err)
	}
	if _, err := readHandshake(bytes.NewReader(b[:40])); err == nil {
		t.Error("short handshake accepted")
	}
}

func TestMsgReader_ReadsWhatTheEncodersWrite(t *testing.T) {
	r := request{index: 7, begin: 64 << 10, length: 16 << 10}
	var b []byte
	b = appendKeepalive(b)
	b = appendSimple(b, msgInterested)
	b = appendIndex(b, msgHave, 9)
	b = appendBlockMsg(b, msgRequest, r)
	b = appendBlockMsg(b, msgCancel, r)
	b = appendIndex(b, msgSuggest, 3)
	b = appendFullBitfield(b, 11)
	b = appendSimple(b, msgHaveNone)
	want := []message{
		{keepalive: true},
		{id: msgInterested, payload: []byte{}},
		{id: msgHave, index: 9},
		{id: msgRequest, index: 7, begin: 64 << 10, length: 16 << 10},
		{id: msgCancel, index: 7, begin: 64 << 10, length: 16 << 10},
		{id: msgSuggest, index: 3},
		{id: msgBitfield, payload: []byte{0xff, 0xe0}},
		{id: msgHaveNone, payload: []byte{}},
	}
	mr := newMsgReader(bytes.NewReader(b), 1<<16)
	for i, w := range want {
		m, err := mr.next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if m.keepalive != w.keepalive || m.id != w.id || m.index != w.index || m.begin != w.begin || m.length != w.length || !bytes.Equal(m.payload, w.payload) {
			t.Errorf("message %d: %+v, want %+v", i, m, w)
		}
	}
	if _, err := mr.next(); err != io.EOF {
		t.Errorf("after the last message: %v, want EOF", err)
	}
}

func TestMsgReader_RefusesMalformedMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want error
	}{
		{"longer than allowed", []byte{0, 1, 0, 0, msgBitfield}, errProtocol},
		{"have of the wrong length", []byte{0, 0, 0, 3, msgHave, 0, 0}, errProtocol},
		{"request of the wrong length", append([]byte{0, 0, 0, 9, msgRequest}, make([]byte, 8)...), errProtocol},
		{"cut inside the body", []byte{0, 0, 0, 5, msgHave, 0}, io.ErrUnexpectedEOF},
		{"cut inside the length", []byte{0, 0}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newMsgReader(bytes.NewReader(tc.in), 1024).next()
			if !errors.Is(err, tc.want) {
				t.Errorf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBitfield_FullBitfieldHoldsEveryPieceAndNoSpareBit(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 17, 511} {
		b := appendFullBitfield(nil, n)
		m, err := newMsgReader(bytes.NewReader(b), 1<<16).next()
		if err != nil {
			t.Fatal(err)
		}
		set, err := bitfieldPieces(m.payload, n)
		if err != nil {
			t.Fatalf("%d pieces: %v", n, err)
		}
		if len(set) != n || set[0] != 0 || set[n-1] != n-1 {
			t.Errorf("%d pieces: bitfield sets %d", n, len(set))
		}
	}
	if _, err := bitfieldPieces([]byte{0xff, 0xff}, 9); !errors.Is(err, errProtocol) {
		t.Errorf("spare bits set: err %v", err)
	}
	if _, err := bitfieldPieces([]byte{0xff}, 9); !errors.Is(err, errProtocol) {
		t.Errorf("bitfield too short: err %v", err)
	}
	if set, err := bitfieldPieces([]byte{0x41, 0x00}, 9); err != nil || !slices.Equal(set, []int{1, 7}) {
		t.Errorf("pieces %v, err %v; want [1 7]", set, err)
	}
}

func TestPieceHeader_PrefixesTheBlock(t *testing.T) {
	r := request{index: 2, begin: 16 << 10, length: 100}
	h := appendPieceHeader(nil, r)
	if len(h) != pieceHeaderLen {
		t.Fatalf("header of %d bytes", len(h))
	}
	if n := binary.BigEndian.Uint32(h); n != 9+100 || h[4] != msgPiece {
		t.Errorf("length %d id %d", n, h[4])
	}
}

// FuzzMsgReader feeds arbitrary bytes to the message reader: it must never
// panic, never return a message longer than its limit, and every message of
// a fixed form it returns must encode back to the bytes it came from.
func FuzzMsgReader(f *testing.F) {
	f.Add(appendBlockMsg(appendSimple(nil, msgUnchoke), msgRequest, request{1, 2, 3}))
	f.Add(appendFullBitfield(appendKeepalive(nil), 13))
	f.Add([]byte{0, 0, 0, 5, msgHave, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		const limit = 256
		mr := newMsgReader(bytes.NewReader(in), limit)
		for range 1000 {
			m, err := mr.next()
			if err != nil {
				return
			}
			if m.keepalive {
				continue
			}
			if len(m.payload)+1 > limit {
				t.Fatalf("payload of %d bytes over the limit", len(m.payload))
			}
			var re []byte
			switch m.id {
			case msgHave, msgSuggest, msgAllowedFast:
				re = appendIndex(nil, m.id, m.index)
			case msgRequest, msgCancel, msgReject:
				re = appendBlockMsg(nil, m.id, request{m.index, m.begin, m.length})
			case msgChoke, msgUnchoke, msgInterested, msgNotInterested, msgHaveAll, msgHaveNone:
				re = appendSimple(nil, m.id)
			default:
				continue
			}
			if !bytes.Contains(in, re) {
				t.Fatalf("message %+v re-encodes to %x, not in the input", m, re)
			}
		}
	})
}

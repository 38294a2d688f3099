package swarm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// wireStream is a peer's side of a connection: the handshake, then
// messages, with where each piece message's block lies in it.
type wireStream struct {
	b      []byte
	blocks [][2]int // [start, end) of each block
}

func newWireStream() *wireStream {
	hs := append([]byte{19}, "BitTorrent protocol"...)
	hs = append(hs, make([]byte, 8+20+20)...)
	return &wireStream{b: hs}
}

func (s *wireStream) msg(typ byte, body []byte) {
	s.b = binary.BigEndian.AppendUint32(s.b, uint32(1+len(body)))
	s.b = append(append(s.b, typ), body...)
}

func (s *wireStream) keepAlive() { s.b = append(s.b, 0, 0, 0, 0) }

func (s *wireStream) piece(index, begin uint32, block []byte) {
	head := binary.BigEndian.AppendUint32(nil, index)
	head = binary.BigEndian.AppendUint32(head, begin)
	start := len(s.b) + 4 + 1 + len(head)
	s.msg(msgPiece, append(head, block...))
	s.blocks = append(s.blocks, [2]int{start, len(s.b)})
}

// blockLeft is what wireFrames.blockLeft should say once the first k
// bytes are read.
func (s *wireStream) blockLeft(k int) int {
	for _, b := range s.blocks {
		if k >= b[0] && k < b[1] {
			return b[1] - k
		}
	}
	return 0
}

func TestWireFrames_FollowsBlocksAcrossAnySplit(t *testing.T) {
	s := newWireStream()
	s.msg(20, []byte("d1:md11:ut_metadatai1eee")) // extended handshake
	s.msg(5, bytes.Repeat([]byte{0xff}, 40))      // bitfield
	s.keepAlive()
	s.msg(1, nil) // unchoke
	s.piece(3, 0, bytes.Repeat([]byte{7}, 100_000))
	s.msg(4, []byte{0, 0, 0, 3}) // have, right after a block
	s.piece(3, 100_000, nil)     // an empty block
	s.keepAlive()
	s.piece(9, 0, bytes.Repeat([]byte{19}, 30_000)) // a block of bytes that look like lengths and types
	s.piece(10, 0, []byte{0, 0, 0, 0, 7})
	s.msg(0, nil) // choke

	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		f := newWireFrames()
		for k := 0; k < len(s.b); {
			n := min(1+rng.IntN(1<<rng.IntN(17)), len(s.b)-k)
			if round == 0 {
				n = 1 // byte by byte once
			}
			f.read(s.b[k : k+n])
			k += n
			if f.lost {
				t.Fatalf("round %d: lost the stream at byte %d", round, k)
			}
			if got, want := f.blockLeft(), s.blockLeft(k); got != want {
				t.Fatalf("round %d: after %d bytes blockLeft %d, want %d", round, k, got, want)
			}
		}
	}
}

func TestWireFrames_StopsFollowingAStreamItDoesNotKnow(t *testing.T) {
	for name, b := range map[string][]byte{
		"encrypted handshake":         bytes.Repeat([]byte{0xa5}, 200),
		"length beyond any message":   append(newWireStream().b, 0x7f, 0, 0, 0, 1),
		"piece shorter than its head": append(newWireStream().b, 0, 0, 0, 5, msgPiece, 0, 0, 0, 0),
	} {
		f := newWireFrames()
		f.read(b)
		if !f.lost || f.blockLeft() != 0 {
			t.Errorf("%s: lost %v, blockLeft %d; want lost and 0", name, f.lost, f.blockLeft())
		}
	}
}

package seed

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
	"golang.org/x/time/rate"
)

// rawPeer is a scripted BitTorrent peer speaking to the seeder over
// loopback with the package's own codec.
type rawPeer struct {
	t  *testing.T
	nc net.Conn
	r  *msgReader
}

func dialRaw(t *testing.T, s *Seeder, ih metainfo.Hash, fast bool) *rawPeer {
	t.Helper()
	return dialRawWith(t, &net.Dialer{}, s, ih, fast)
}

func dialRawWith(t *testing.T, d *net.Dialer, s *Seeder, ih metainfo.Hash, fast bool) *rawPeer {
	t.Helper()
	nc, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// Generous: only a hung seeder ever hits it.
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	h := handshake{infoHash: ih, peerID: [20]byte{'-', 'T', 'T'}}
	if fast {
		h.reserved[fastByte] |= fastBit
	}
	if _, err := nc.Write(h.append(nil)); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, nc: nc, r: newMsgReader(nc, 1<<20)}
}

func (p *rawPeer) send(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// next returns the next message that is not a keepalive.
func (p *rawPeer) next() message {
	p.t.Helper()
	for {
		m, err := p.r.next()
		if err != nil {
			p.t.Fatalf("read: %v", err)
		}
		if !m.keepalive {
			return m
		}
	}
}

// greet reads the seeder's greeting to a fast-extension peer and answers
// it as a node that has nothing and wants the layer.
func (p *rawPeer) greet(ih metainfo.Hash) {
	p.t.Helper()
	h, err := readHandshake(p.nc)
	if err != nil {
		p.t.Fatal(err)
	}
	if h.infoHash != ih || !h.fast() {
		p.t.Fatalf("handshake for %x, fast %v", h.infoHash, h.fast())
	}
	if m := p.next(); m.id != msgHaveAll {
		p.t.Fatalf("first message %d, want have all", m.id)
	}
	if m := p.next(); m.id != msgUnchoke {
		p.t.Fatalf("second message %d, want unchoke", m.id)
	}
	p.send(appendSimple(appendSimple(nil, msgHaveNone), msgInterested))
}

// expectClosed checks that the seeder closes the connection without
// sending anything.
func (p *rawPeer) expectClosed() {
	p.t.Helper()
	b, err := io.ReadAll(p.nc)
	// A close with our handshake unread in its buffer is a reset.
	if len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
		p.t.Errorf("seeder sent %d bytes (err %v), want it to close at once", len(b), err)
	}
}

// protocolJob serves one layer of 4 pieces of 256 KiB.
func protocolJob(t *testing.T, cfg Config) (*Seeder, metainfo.Hash, []byte) {
	t.Helper()
	path, _ := writeFile(t, t.TempDir(), 4*256<<10, 5)
	mt, ih, err := MakeTorrent(path, 256<<10, "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ListenAddr = "127.0.0.1:0"
	s, err := NewSeeder(context.Background(), cfg, []Layer{{Path: path, Torrent: mt}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s, ih, data
}

func TestSeeder_SpeaksTheFastExtension(t *testing.T) {
	// The rate limit keeps most of a's requests waiting for minutes, so a
	// stays the active owner of piece 0 however slow the test runs.
	s, ih, data := protocolJob(t, Config{AllowLoopback: true, MaxRate: 1024})
	a, b := dialRaw(t, s, ih, true), dialRaw(t, s, ih, true)
	a.greet(ih)
	b.greet(ih)

	// a asks first for all of piece 0 and gets its first block.
	var reqs []byte
	for begin := uint32(0); begin < 256<<10; begin += 16 << 10 {
		reqs = appendBlockMsg(reqs, msgRequest, request{index: 0, begin: begin, length: 16 << 10})
	}
	a.send(reqs)
	m := a.next()
	if m.id != msgPiece || !bytes.Equal(m.payload[8:], data[:16<<10]) {
		t.Fatalf("a got message %d with %d bytes, want the first block", m.id, len(m.payload))
	}

	// b's requests for piece 0 wait while a owns it; b's cancel of one is
	// answered with a reject.
	held1 := request{index: 0, begin: 0, length: 16 << 10}
	held2 := request{index: 0, begin: 32 << 10, length: 16 << 10}
	b.send(appendBlockMsg(appendBlockMsg(nil, msgRequest, held1), msgRequest, held2))
	b.send(appendBlockMsg(nil, msgCancel, held1))
	if m := b.next(); m.id != msgReject || (request{m.index, m.begin, m.length}) != held1 {
		t.Fatalf("b got %+v, want the reject of its cancelled request", m)
	}
	// Once a reports piece 0, b is to get it from a: its request is refused.
	a.send(appendIndex(nil, msgHave, 0))
	if m := b.next(); m.id != msgReject || (request{m.index, m.begin, m.length}) != held2 {
		t.Fatalf("b got %+v, want the reject of its held request", m)
	}

	// A request outside the piece ends the connection.
	a.send(appendBlockMsg(nil, msgRequest, request{index: 1, begin: 250 << 10, length: 16 << 10}))
	if _, err := io.ReadAll(a.nc); err != nil {
		t.Errorf("after a bad request: %v", err)
	}
}

func TestSeeder_ServesAPeerWithoutTheFastExtensionEverything(t *testing.T) {
	s, ih, data := protocolJob(t, Config{AllowLoopback: true})
	p := dialRaw(t, s, ih, false)
	if _, err := readHandshake(p.nc); err != nil {
		t.Fatal(err)
	}
	if m := p.next(); m.id != msgBitfield || !bytes.Equal(m.payload, []byte{0xf0}) {
		t.Fatalf("first message %+v, want a full bitfield", m)
	}
	if m := p.next(); m.id != msgUnchoke {
		t.Fatalf("second message %d, want unchoke", m.id)
	}
	p.send(appendSimple(nil, msgInterested))
	for i := range uint32(4) {
		p.send(appendBlockMsg(nil, msgRequest, request{index: i, begin: 0, length: 16 << 10}))
		m := p.next()
		off := int(i) * 256 << 10
		if m.id != msgPiece || !bytes.Equal(m.payload[8:], data[off:off+16<<10]) {
			t.Fatalf("piece %d: message %d", i, m.id)
		}
	}
}

func TestSeeder_RefusesUnknownTorrentsAndHostsBeforeAnyData(t *testing.T) {
	s, _, _ := protocolJob(t, Config{AllowLoopback: true})
	dialRaw(t, s, metainfo.Hash{9, 9, 9}, true).expectClosed()

	s2, ih2, _ := protocolJob(t, Config{AllowedIPs: []string{"10.1.2.3"}})
	dialRaw(t, s2, ih2, true).expectClosed()
	if st := s2.Stats(); st.Peers != 0 || st.Uploaded != 0 {
		t.Errorf("stats after a refused host: %+v", st)
	}
}

func TestSeeder_CloseEndsEveryConnection(t *testing.T) {
	s, ih, _ := protocolJob(t, Config{AllowLoopback: true})
	p := dialRaw(t, s, ih, true)
	if _, err := readHandshake(p.nc); err != nil {
		t.Fatal(err)
	}
	p.next() // have all
	p.next() // unchoke
	if st := s.Stats(); st.Peers != 1 {
		t.Errorf("%d peers, want 1", st.Peers)
	}
	// A peer that connected and never greeted must not hold Close up for
	// the handshake timeout (10 s).
	silent, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout/2)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(p.nc); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port())); err == nil {
		t.Error("seeder still accepts after Close")
	}
}

// A peer that stops reading keeps its sending slot (until writeTimeout or
// its connection ends); with MaxSending 1 every other connection waits,
// with 2 the next one is served at once. So the bastion's link never
// carries more than MaxSending flows of blocks, however many hosts ask.
func TestSeeder_SendsOnAtMostMaxSendingConnectionsAtOnce(t *testing.T) {
	for _, slots := range []int{1, 2} {
		t.Run(fmt.Sprintf("slots=%d", slots), func(t *testing.T) {
			s, ih, data := protocolJob(t, Config{AllowLoopback: true, MaxSending: slots})
			// a's socket takes a few KiB and a reads none of them: the
			// seeder's write of a's piece blocks, holding a slot.
			tiny := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
				})
				return errors.Join(err, serr)
			}}
			a := dialRawWith(t, tiny, s, ih, true)
			a.greet(ih)
			var reqs []byte
			for begin := uint32(0); begin < 256<<10; begin += 16 << 10 {
				reqs = appendBlockMsg(reqs, msgRequest, request{index: 0, begin: begin, length: 16 << 10})
			}
			a.send(reqs)
			waitSlotsHeld(t, s, 1)

			b := dialRaw(t, s, ih, true)
			b.greet(ih)
			b.send(appendBlockMsg(nil, msgRequest, request{index: 1, begin: 0, length: 16 << 10}))
			if slots == 1 {
				b.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				if m, err := b.r.next(); err == nil {
					t.Fatalf("b got message %d while a held the only slot", m.id)
				} else if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("b: %v", err)
				}
				b.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
				a.nc.Close() // the seeder's write fails and frees the slot
			}
			m := b.next()
			if m.id != msgPiece || !bytes.Equal(m.payload[8:], data[256<<10:256<<10+16<<10]) {
				t.Fatalf("b got message %d with %d bytes, want its block", m.id, len(m.payload))
			}
		})
	}
}

// waitSlotsHeld waits until n of the seeder's sending slots stay taken for
// a while, i.e. a writer is blocked in a send rather than between blocks.
func waitSlotsHeld(t *testing.T, s *Seeder, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for steady := 0; steady < 10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d sending slots never stayed taken", n)
		}
		if s.sending.TryAcquire(int64(s.cfg.MaxSending) - n + 1) {
			s.sending.Release(int64(s.cfg.MaxSending) - n + 1)
			steady = 0
			continue
		}
		steady++
	}
}

func TestSeeder_ABlockCancelledOrLeftWhileWaitingSpendsNoneOfTheRateBudget(t *testing.T) {
	// 4 KiB/s: a 16 KiB block waits 4 s for the budget once it is spent.
	const block = 16 << 10
	lim := rate.NewLimiter(4<<10, block)
	s, ih, data := protocolJob(t, Config{AllowLoopback: true, Limiter: lim})
	if !lim.AllowN(time.Now(), block) {
		t.Fatal("a new limiter has no burst")
	}
	// Four connections each ask for the first block of their own piece,
	// which the policy serves; their writers wait for the rate.
	peers := make([]*rawPeer, 4)
	reqs := make([]request, len(peers))
	for i := range peers {
		peers[i] = dialRaw(t, s, ih, true)
		peers[i].greet(ih)
		reqs[i] = request{index: uint32(i), length: block}
		peers[i].send(appendBlockMsg(nil, msgRequest, reqs[i]))
	}
	waitWritersWaiting(t, s, len(peers))

	// Three cancel their block: each is answered with a reject, not sent.
	for i, p := range peers[:3] {
		p.send(appendBlockMsg(nil, msgCancel, reqs[i]))
		if m := p.next(); m.id != msgReject || (request{m.index, m.begin, m.length}) != reqs[i] {
			t.Fatalf("peer %d got %+v, want the reject of its cancelled block", i, m)
		}
	}
	// The fourth leaves.
	peers[3].nc.Close()
	// Every reservation given back, the budget is what the refill added
	// since it was emptied, about a block every 4 s; a wait that had spent
	// its share would keep it 16 KiB below that until its block's turn.
	deadline := time.Now().Add(2 * time.Second)
	for lim.Tokens() < 0 {
		if time.Now().After(deadline) {
			t.Fatalf("rate budget %.0f bytes after every waiting block was cancelled or left, want ≥ 0", lim.Tokens())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The budget still serves: a asks again and gets its block.
	peers[0].send(appendBlockMsg(nil, msgRequest, reqs[0]))
	if m := peers[0].next(); m.id != msgPiece || !bytes.Equal(m.payload[8:], data[:block]) {
		t.Fatalf("a got message %d with %d bytes, want its block", m.id, len(m.payload))
	}
}

// waitWritersWaiting waits until n of the seeder's connections have taken
// a block and wait to send it.
func waitWritersWaiting(t *testing.T, s *Seeder, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		waiting := 0
		s.mu.Lock()
		for c := range s.conns {
			c.mu.Lock()
			if c.state == writerWaiting {
				waiting++
			}
			c.mu.Unlock()
		}
		s.mu.Unlock()
		if waiting >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writers wait to send", waiting, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package swarm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// TestFilePiece_WriteToFeedsThePiecesBytes checks the single-read path of
// the SHA-1 check: every piece, the short last one included, is written
// with the file's bytes as they are at the time of the check.
func TestFilePiece_WriteToFeedsThePiecesBytes(t *testing.T) {
	const pieceLen = 4
	data := []byte("aaaabbbbcc") // pieces "aaaa", "bbbb", "cc"
	path := filepath.Join(t.TempDir(), "layer")
	info := &metainfo.Info{Name: "layer", PieceLength: pieceLen, Length: int64(len(data)), Pieces: make([]byte, 3*20)}
	lf, err := newFileStorage().register(metainfo.Hash{1}, path, info, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	piece := func(i int) filePiece {
		off := int64(i) * pieceLen
		return filePiece{lf: lf, index: i, off: off, length: min(pieceLen, int64(len(data))-off)}
	}
	check := func(i int) {
		t.Helper()
		var got bytes.Buffer
		if n, err := piece(i).WriteTo(&got); err != nil || n != piece(i).length {
			t.Fatalf("WriteTo piece %d: %d bytes, %v", i, n, err)
		}
		if want := data[piece(i).off : piece(i).off+piece(i).length]; !bytes.Equal(got.Bytes(), want) {
			t.Fatalf("WriteTo piece %d wrote %q, want %q", i, got.Bytes(), want)
		}
	}
	check(2)
	check(0)
	check(1)
	// A piece written again (a failed check, then the data again) is
	// read again.
	if _, err := lf.f.WriteAt([]byte("BBBB"), pieceLen); err != nil {
		t.Fatal(err)
	}
	data = []byte("aaaaBBBBcc")
	check(1)
}

// TestLayerFile_OnWholeOnceEveryPieceIsComplete: the download's "layer
// done" comes once, when the last missing piece passes, whatever the order.
func TestLayerFile_OnWholeOnceEveryPieceIsComplete(t *testing.T) {
	info := &metainfo.Info{Name: "layer", PieceLength: 4, Length: 10, Pieces: make([]byte, 3*20)}
	calls := 0
	lf, err := newFileStorage().register(metainfo.Hash{4}, filepath.Join(t.TempDir(), "layer"), info, false, func() { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		piece    int
		complete bool
		want     int
	}{
		{2, true, 0},
		{0, true, 0},
		{0, false, 0}, // a piece that failed again
		{1, true, 0},
		{0, true, 1},
		{0, true, 1}, // marked twice: called once
	} {
		lf.setComplete(step.piece, step.complete)
		if calls != step.want {
			t.Errorf("after piece %d complete=%v: onWhole called %d times, want %d", step.piece, step.complete, calls, step.want)
		}
	}
}

// TestFileStorage_SignalsEachPieceThatPasses: a download waits on
// pieceDone to start its next layer; a piece that passes signals it, one
// that fails or was already complete does not.
func TestFileStorage_SignalsEachPieceThatPasses(t *testing.T) {
	info := &metainfo.Info{Name: "layer", PieceLength: 4, Length: 10, Pieces: make([]byte, 3*20)}
	store := newFileStorage()
	lf, err := store.register(metainfo.Hash{5}, filepath.Join(t.TempDir(), "layer"), info, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	signalled := func() bool {
		select {
		case <-store.pieceDone:
			return true
		default:
			return false
		}
	}
	for _, step := range []struct {
		piece    int
		complete bool
		want     bool
	}{
		{1, true, true},
		{1, true, false}, // already complete
		{1, false, false},
		{0, false, false},
		{1, true, true},
		{2, true, true},
	} {
		lf.setComplete(step.piece, step.complete)
		if got := signalled(); got != step.want {
			t.Errorf("after piece %d complete=%v: signalled %v, want %v", step.piece, step.complete, got, step.want)
		}
	}
	lf.setComplete(0, true)
	lf.setComplete(0, true)
	if !signalled() || signalled() {
		t.Error("two pieces passing between two looks: want one signal kept, not a block")
	}
}

func TestLayerFile_CountsVerifiedBytesAsPiecesComeAndGo(t *testing.T) {
	info := &metainfo.Info{Name: "layer", PieceLength: 4, Length: 10, Pieces: make([]byte, 3*20)}
	store := newFileStorage()
	lf, err := store.register(metainfo.Hash{2}, filepath.Join(t.TempDir(), "layer"), info, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		piece    int
		complete bool
		want     int64
	}{
		{2, true, 2}, // the last piece is short
		{0, true, 6},
		{0, true, 6}, // marked twice: counted once
		{0, false, 2},
		{1, true, 6},
		{0, true, 10},
	} {
		lf.setComplete(step.piece, step.complete)
		if got := lf.verified.Load(); got != step.want {
			t.Errorf("after piece %d complete=%v: %d verified bytes, want %d", step.piece, step.complete, got, step.want)
		}
	}
	seeded, err := store.register(metainfo.Hash{3}, lf.path, info, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := seeded.verified.Load(); got != 10 {
		t.Errorf("a file registered complete counts %d verified bytes, want 10", got)
	}
}

// A read anacrolix makes for a peer around the client's close must not
// fail (a read error on a closed torrent panics in anacrolix v1.61.0): the
// storage's close waits for a read in flight, and a peer's read after it
// gets zeros for a connection that is closed already.
func TestFileStorage_APeersReadAroundCloseDoesNotFail(t *testing.T) {
	info := &metainfo.Info{PieceLength: 16 << 10, Length: 64 << 10}
	store := newFileStorage()
	lf, err := store.register(metainfo.Hash{4}, filepath.Join(t.TempDir(), "layer"), info, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := filePiece{lf: lf, index: 1, off: 16 << 10, length: 16 << 10}
	lf.io.RLock() // a read in flight, past its start
	closed := make(chan error, 1)
	go func() { closed <- store.close() }()
	select {
	case err := <-closed:
		t.Fatalf("close returned (%v) while a read was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := lf.f.ReadAt(make([]byte, 16<<10), p.off); err != nil {
		t.Fatalf("the read in flight failed: %v", err)
	}
	lf.io.RUnlock()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadAt(make([]byte, 1), 0); err == nil {
		t.Error("a piece read after close succeeded")
	}
	b := []byte{1, 2, 3}
	if n, err := (peerBlockReader{lf}).ReadAt(b, p.off); n != len(b) || err != nil || !bytes.Equal(b, []byte{0, 0, 0}) {
		t.Errorf("a peer's read after close: %d bytes %v, error %v; want 3 zeros, no error", n, b, err)
	}
}

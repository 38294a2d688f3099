package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// orderedHasher computes a layer file's sha256 while it downloads: every
// time the pieces after the hashed prefix are complete, it feeds them to the
// digest, from the buffer the piece's SHA-1 check read when it was the
// piece waited for, else read back from the file (the page cache). Pieces
// mostly complete in order, so the final check costs about one piece instead
// of a second pass over the whole file.
type orderedHasher struct {
	lf        *layerFile
	pieceLen  int64
	numPieces int
	wake      chan struct{} // capacity 1: "some piece completed"
	next      int           // first piece not yet hashed; owned by run
}

// pieceCompleted is the storage's completion hook; it never blocks.
func (h *orderedHasher) pieceCompleted(int) {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run hashes the file in order as pieces complete and returns its digest as
// "sha256:<hex>" once every piece was hashed.
func (h *orderedHasher) run(ctx context.Context) (string, error) {
	d := sha256.New()
	buf := make([]byte, min(h.pieceLen, 4<<20))
	for h.next < h.numPieces {
		if h.lf.isComplete(h.next) {
			if pb := h.lf.takeKept(h.next); pb != nil {
				d.Write(pb.b[:h.pieceSize(h.next)])
				h.lf.bufs.Put(pb)
			} else if err := h.hashPiece(d, h.next, buf); err != nil {
				return "", err
			}
			h.next++
			continue
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-h.wake:
		}
	}
	return "sha256:" + hex.EncodeToString(d.Sum(nil)), nil
}

func (h *orderedHasher) pieceSize(i int) int64 {
	off := int64(i) * h.pieceLen
	return min(off+h.pieceLen, h.lf.length) - off
}

func (h *orderedHasher) hashPiece(d hash.Hash, i int, buf []byte) error {
	off := int64(i) * h.pieceLen
	end := min(off+h.pieceLen, h.lf.length)
	for off < end {
		n := min(int64(len(buf)), end-off)
		if _, err := h.lf.readAt(buf[:n], off); err != nil {
			return fmt.Errorf("read back piece %d: %w", i, err)
		}
		d.Write(buf[:n])
		off += n
	}
	return nil
}

package seed

import (
	"errors"
	"fmt"
	"slices"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Bounds on what a peer may ask of the seeder.
const (
	// maxBlockLen is the largest block a request may ask for: twice what
	// nodes ask for (jobspec.ChunkSize); BEP 3 clients ask for 16 KiB.
	maxBlockLen = 2 * jobspec.ChunkSize
	// maxQueued is how many accepted requests a connection may have waiting.
	// An anacrolix node keeps at most 250 requests outstanding with a peer
	// that sends no extended handshake (its PeerMaxRequests default), so a
	// well-behaved node never reaches this.
	maxQueued = 512
)

// request is a block a peer asked for (also the form of cancel and reject).
type request struct {
	index, begin, length uint32
}

var errQueueFull = errors.New("too many requests queued")

// checkRequest reports whether r asks for a block inside the torrent: a
// piece that exists, at most maxBlockLen long, within that piece.
func checkRequest(r request, l *layerInfo) error {
	if int64(r.index) >= int64(l.numPieces) {
		return fmt.Errorf("%w: request for piece %d of %d", errProtocol, r.index, l.numPieces)
	}
	if r.length == 0 || r.length > maxBlockLen {
		return fmt.Errorf("%w: request of %d bytes", errProtocol, r.length)
	}
	if int64(r.begin)+int64(r.length) > l.pieceLength(int(r.index)) {
		return fmt.Errorf("%w: request for bytes %d+%d of a %d-byte piece", errProtocol, r.begin, r.length, l.pieceLength(int(r.index)))
	}
	return nil
}

// requestQueue is a connection's accepted requests not yet sent, in arrival
// order, at most limit of them.
type requestQueue struct {
	items []request
	limit int
}

// push queues r. It returns false if r is queued already (a peer repeating
// itself gets one block), errQueueFull when the queue is full.
func (q *requestQueue) push(r request) (bool, error) {
	if q.contains(r) {
		return false, nil
	}
	if len(q.items) >= q.limit {
		return false, errQueueFull
	}
	q.items = append(q.items, r)
	return true, nil
}

func (q *requestQueue) contains(r request) bool { return slices.Contains(q.items, r) }

// cancel removes r and reports whether it was queued.
func (q *requestQueue) cancel(r request) bool {
	i := slices.Index(q.items, r)
	if i < 0 {
		return false
	}
	q.items = slices.Delete(q.items, i, i+1)
	return true
}

// pop takes the oldest request.
func (q *requestQueue) pop() (request, bool) {
	if len(q.items) == 0 {
		return request{}, false
	}
	r := q.items[0]
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = q.items[:0:0] // let the backing array go once drained
	}
	return r, true
}

func (q *requestQueue) len() int { return len(q.items) }

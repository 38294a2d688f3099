package swarm

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// fileStorage keeps each single-file torrent in one preallocated file and
// reads and writes it with pread/pwrite at the piece's offset. Piece
// completion lives in memory: a job's files live in a fresh temp dir and never
// outlive the process, so there is nothing to resume.
//
// Files must be registered (with register) before their torrent is added.
type fileStorage struct {
	mu    sync.Mutex
	files map[metainfo.Hash]*layerFile
	// pieceDone receives (without blocking, capacity 1) when a piece of
	// any file passed its check: what a download waits on to start its
	// next layer, instead of polling the files' counts.
	pieceDone chan struct{}
}

func newFileStorage() *fileStorage {
	return &fileStorage{files: make(map[metainfo.Hash]*layerFile), pieceDone: make(chan struct{}, 1)}
}

// layerFile is the storage of one layer's torrent.
type layerFile struct {
	path     string
	length   int64
	pieceLen int64
	f        *os.File
	// io is held (shared) by every read and write of f and (exclusive) by
	// its close, which sets closed: a read in flight finishes before the
	// file closes.
	io     sync.RWMutex
	closed bool
	// verified counts the bytes of the pieces marked complete: progress,
	// the next layer's start and the tracker's "left" read it without
	// taking the torrent client's lock or walking its pieces.
	verified atomic.Int64

	mu       sync.Mutex
	complete []bool
	// onWhole is called once (without locks held) when every piece has
	// passed its SHA-1 check: the file is the layer's as the metainfo
	// says.
	onWhole func()
	whole   bool       // onWhole was called
	bufs    *sync.Pool // of *[]byte, one piece each (see filePiece.WriteTo)
	// pieceDone is the storage's (fileStorage.pieceDone).
	pieceDone chan<- struct{}
}

// register opens (creating when asked) path as the storage of the torrent
// with infohash ih. With allComplete the file is trusted to hold the whole
// torrent already; its size is checked, its content is not. Otherwise
// onWhole, if set, is called once all its pieces are complete.
func (s *fileStorage) register(ih metainfo.Hash, path string, info *metainfo.Info, allComplete bool, onWhole func()) (*layerFile, error) {
	if info.IsDir() {
		return nil, fmt.Errorf("torrent %s has several files; a layer torrent has one", ih.HexString())
	}
	length := info.TotalLength()
	flag := os.O_RDWR | os.O_CREATE
	if allComplete {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open layer file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat layer file: %w", err)
	}
	if allComplete && fi.Size() != length {
		f.Close()
		return nil, fmt.Errorf("layer file %s has %d bytes, torrent says %d", path, fi.Size(), length)
	}
	if !allComplete && fi.Size() != length {
		if err := f.Truncate(length); err != nil {
			f.Close()
			return nil, fmt.Errorf("size layer file: %w", err)
		}
	}
	pieceLen := info.PieceLength
	lf := &layerFile{
		path: path, length: length, pieceLen: pieceLen, f: f,
		complete: make([]bool, info.NumPieces()), onWhole: onWhole, pieceDone: s.pieceDone,
		bufs: &sync.Pool{New: func() any { b := make([]byte, pieceLen); return &b }},
	}
	if allComplete {
		for i := range lf.complete {
			lf.complete[i] = true
		}
		lf.verified.Store(length)
		lf.whole = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.files[ih]; ok {
		old.close()
	}
	s.files[ih] = lf
	return lf, nil
}

// close closes every file.
func (s *fileStorage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for ih, lf := range s.files {
		if err := lf.close(); err != nil && first == nil {
			first = err
		}
		delete(s.files, ih)
	}
	return first
}

// OpenTorrent implements storage.ClientImpl.
func (s *fileStorage) OpenTorrent(_ context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	s.mu.Lock()
	lf, ok := s.files[ih]
	s.mu.Unlock()
	if !ok {
		return storage.TorrentImpl{}, fmt.Errorf("no file registered for torrent %s", ih.HexString())
	}
	return storage.TorrentImpl{
		PieceWithHash: func(p metainfo.Piece, _ g.Option[[]byte]) storage.PieceImpl {
			return filePiece{lf: lf, index: p.Index(), off: p.Offset(), length: p.Length()}
		},
		NewReader: func() storage.TorrentReader { return peerBlockReader{lf} },
		// The file is closed by fileStorage.close, after the client let go.
		Close: func() error { return nil },
	}, nil
}

func (lf *layerFile) setComplete(i int, c bool) {
	lf.mu.Lock()
	was := lf.complete[i]
	lf.complete[i] = c
	if c != was {
		n := min(lf.pieceLen, lf.length-int64(i)*lf.pieceLen)
		if !c {
			n = -n
		}
		lf.verified.Add(n)
	}
	whole := !lf.whole && lf.verified.Load() == lf.length
	if whole {
		lf.whole = true
	}
	lf.mu.Unlock()
	if c && !was {
		select {
		case lf.pieceDone <- struct{}{}:
		default:
		}
	}
	if whole && lf.onWhole != nil {
		lf.onWhole()
	}
}

// missing returns the pieces not marked complete.
func (lf *layerFile) missing() []int {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	var m []int
	for i, c := range lf.complete {
		if !c {
			m = append(m, i)
		}
	}
	return m
}

func (lf *layerFile) isComplete(i int) bool {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.complete[i]
}

type filePiece struct {
	lf     *layerFile
	index  int
	off    int64
	length int64
}

func (lf *layerFile) readAt(b []byte, off int64) (int, error) {
	lf.io.RLock()
	defer lf.io.RUnlock()
	return lf.f.ReadAt(b, off)
}

func (lf *layerFile) writeAt(b []byte, off int64) (int, error) {
	lf.io.RLock()
	defer lf.io.RUnlock()
	return lf.f.WriteAt(b, off)
}

// readForPeer reads a block anacrolix is to send to a peer. After the
// storage closed it returns zeros and no error. anacrolix reads a peer's
// block with its lock released, and when that read fails on a torrent
// that closed meanwhile it panics (peerconn.go servePeerRequest, v1.61.0
// and v1.62.0: the request is neither rejected nor served). Client.Close
// closes the anacrolix client before the storage, so such a read's
// connection is already closed and its bytes go nowhere.
func (lf *layerFile) readForPeer(b []byte, off int64) (int, error) {
	lf.io.RLock()
	defer lf.io.RUnlock()
	if lf.closed {
		clear(b)
		return len(b), nil
	}
	return lf.f.ReadAt(b, off)
}

// close closes the file once no read or write of it is in flight.
func (lf *layerFile) close() error {
	lf.io.Lock()
	defer lf.io.Unlock()
	if lf.closed {
		return nil
	}
	lf.closed = true
	return lf.f.Close()
}

func (p filePiece) ReadAt(b []byte, off int64) (int, error) { return p.lf.readAt(b, p.off+off) }

func (p filePiece) WriteAt(b []byte, off int64) (int, error) { return p.lf.writeAt(b, p.off+off) }

// WriteTo feeds the piece to w (anacrolix's SHA-1 piece check) from one
// read of the file, instead of the many small reads of anacrolix's
// fallback.
func (p filePiece) WriteTo(w io.Writer) (int64, error) {
	bp := p.lf.bufs.Get().(*[]byte)
	defer p.lf.bufs.Put(bp)
	if int64(cap(*bp)) < p.length {
		*bp = make([]byte, p.length)
	}
	b := (*bp)[:p.length]
	if _, err := p.lf.readAt(b, p.off); err != nil {
		return 0, fmt.Errorf("read piece %d: %w", p.index, err)
	}
	n, err := w.Write(b)
	return int64(n), err
}

func (p filePiece) MarkComplete() error {
	p.lf.setComplete(p.index, true)
	return nil
}

func (p filePiece) MarkNotComplete() error {
	p.lf.setComplete(p.index, false)
	return nil
}

func (p filePiece) Completion() storage.Completion {
	return storage.Completion{Ok: true, Complete: p.lf.isComplete(p.index)}
}

// peerBlockReader is the torrent-wide reader anacrolix serves peers from.
type peerBlockReader struct{ lf *layerFile }

func (r peerBlockReader) ReadAt(b []byte, off int64) (int, error) { return r.lf.readForPeer(b, off) }
func (peerBlockReader) Close() error                              { return nil }

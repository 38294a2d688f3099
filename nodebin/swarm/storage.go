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
}

func newFileStorage() *fileStorage {
	return &fileStorage{files: make(map[metainfo.Hash]*layerFile)}
}

// layerFile is the storage of one layer's torrent.
type layerFile struct {
	path     string
	length   int64
	pieceLen int64
	f        *os.File
	// verified counts the bytes of the pieces marked complete: progress,
	// the next layer's start and the tracker's "left" read it without
	// taking the torrent client's lock or walking its pieces.
	verified atomic.Int64

	mu       sync.Mutex
	complete []bool
	// onComplete is called (without locks held) after a piece passed its
	// SHA-1 check and was marked complete.
	onComplete func(piece int)
	// hashNext is the piece the layer's sha256 hasher waits for; kept holds
	// that piece's bytes as the SHA-1 check read them, so the hasher need
	// not read them back from the file (see filePiece.WriteTo).
	hashNext int
	kept     *pieceBuf
	bufs     *sync.Pool // of *pieceBuf
}

// pieceBuf holds one piece read from the file.
type pieceBuf struct {
	index int
	b     []byte
}

// register opens (creating when asked) path as the storage of the torrent
// with infohash ih. With allComplete the file is trusted to hold the whole
// torrent already; its size is checked, its content is not.
func (s *fileStorage) register(ih metainfo.Hash, path string, info *metainfo.Info, allComplete bool, onComplete func(int)) (*layerFile, error) {
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
		complete: make([]bool, info.NumPieces()), onComplete: onComplete,
		bufs: &sync.Pool{New: func() any { return &pieceBuf{b: make([]byte, pieceLen)} }},
	}
	if allComplete {
		for i := range lf.complete {
			lf.complete[i] = true
		}
		lf.verified.Store(length)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.files[ih]; ok {
		old.f.Close()
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
		if err := lf.f.Close(); err != nil && first == nil {
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
		NewReader: func() storage.TorrentReader { return nopCloserReaderAt{lf.f} },
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
	lf.mu.Unlock()
	if c && !was && lf.onComplete != nil {
		lf.onComplete(i)
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

func (p filePiece) ReadAt(b []byte, off int64) (int, error) { return p.lf.f.ReadAt(b, p.off+off) }

func (p filePiece) WriteAt(b []byte, off int64) (int, error) { return p.lf.f.WriteAt(b, p.off+off) }

// WriteTo feeds the piece to w (anacrolix's SHA-1 piece check) from one
// read of the file. When the piece is the one the layer's sha256 hasher
// waits for, its buffer is kept for the hasher: the bytes the SHA-1 check
// saw are then the bytes the sha256 sees, read once.
func (p filePiece) WriteTo(w io.Writer) (int64, error) {
	pb := p.lf.bufs.Get().(*pieceBuf)
	if int64(cap(pb.b)) < p.length {
		pb.b = make([]byte, p.length)
	}
	b := pb.b[:p.length]
	if _, err := p.lf.f.ReadAt(b, p.off); err != nil {
		p.lf.bufs.Put(pb)
		return 0, fmt.Errorf("read piece %d: %w", p.index, err)
	}
	n, err := w.Write(b)
	pb.index = p.index
	p.lf.keep(pb)
	return int64(n), err
}

// keep holds pb for the sha256 hasher if it waits for that piece, and
// returns it (or the one it replaces) to the pool otherwise.
func (lf *layerFile) keep(pb *pieceBuf) {
	lf.mu.Lock()
	if pb.index == lf.hashNext {
		pb, lf.kept = lf.kept, pb
	}
	lf.mu.Unlock()
	if pb != nil {
		lf.bufs.Put(pb)
	}
}

// takeKept returns the bytes of piece i if the last SHA-1 check of it left
// them, and records that the hasher now waits for piece i+1. The caller
// gives the buffer back with lf.bufs.Put.
func (lf *layerFile) takeKept(i int) *pieceBuf {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	pb := lf.kept
	lf.kept = nil
	lf.hashNext = i + 1
	if pb != nil && pb.index != i {
		lf.bufs.Put(pb)
		return nil
	}
	return pb
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

type nopCloserReaderAt struct{ f *os.File }

func (r nopCloserReaderAt) ReadAt(b []byte, off int64) (int, error) { return r.f.ReadAt(b, off) }
func (nopCloserReaderAt) Close() error                              { return nil }

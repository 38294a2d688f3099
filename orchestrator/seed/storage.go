package seed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	g "github.com/anacrolix/generics"
	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

// errReadOnly is returned if the client ever tries to write a seeded file.
var errReadOnly = errors.New("seeded layer files are read-only")

// readOnlyStorage serves complete single-file torrents straight from the
// layer cache with pread; every piece is complete by construction.
type readOnlyStorage struct {
	mu    sync.Mutex
	files map[metainfo.Hash]*os.File
}

func newReadOnlyStorage() *readOnlyStorage {
	return &readOnlyStorage{files: make(map[metainfo.Hash]*os.File)}
}

func (s *readOnlyStorage) add(ih metainfo.Hash, f *os.File) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.files[ih]; ok {
		old.Close()
	}
	s.files[ih] = f
}

func (s *readOnlyStorage) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for ih, f := range s.files {
		errs = append(errs, f.Close())
		delete(s.files, ih)
	}
	return errors.Join(errs...)
}

// OpenTorrent implements storage.ClientImpl.
func (s *readOnlyStorage) OpenTorrent(_ context.Context, _ *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	s.mu.Lock()
	f, ok := s.files[ih]
	s.mu.Unlock()
	if !ok {
		return storage.TorrentImpl{}, fmt.Errorf("no layer file for torrent %s", ih.HexString())
	}
	return storage.TorrentImpl{
		PieceWithHash: func(p metainfo.Piece, _ g.Option[[]byte]) storage.PieceImpl {
			return roPiece{f: f, off: p.Offset()}
		},
		NewReader: func() storage.TorrentReader { return roReader{f} },
		Close:     func() error { return nil }, // files are closed by readOnlyStorage.close
	}, nil
}

type roPiece struct {
	f   *os.File
	off int64
}

func (p roPiece) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, p.off+off) }
func (roPiece) WriteAt([]byte, int64) (int, error)        { return 0, errReadOnly }
func (roPiece) MarkComplete() error                       { return nil }
func (roPiece) MarkNotComplete() error                    { return errReadOnly }
func (roPiece) Completion() storage.Completion {
	return storage.Completion{Ok: true, Complete: true}
}

type roReader struct{ f *os.File }

func (r roReader) ReadAt(b []byte, off int64) (int, error) { return r.f.ReadAt(b, off) }
func (roReader) Close() error                              { return nil }

package seed

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/anacrolix/torrent/metainfo"
)

// ErrFileMismatch means a layer file does not hold what its torrent says.
var ErrFileMismatch = errors.New("layer file does not match its torrent")

// Layer is one file to seed with the metainfo MakeTorrent built from it.
type Layer struct {
	Path    string
	Torrent []byte
}

// layerInfo is what the seeder needs of a layer's torrent.
type layerInfo struct {
	infoHash  metainfo.Hash
	path      string
	length    int64
	pieceLen  int64
	numPieces int
}

func (l *layerInfo) pieceLength(i int) int64 {
	if i == l.numPieces-1 {
		return l.length - int64(i)*l.pieceLen
	}
	return l.pieceLen
}

// openLayer reads the layer's metainfo, opens its file and spot-checks it.
// Each file is trusted to be the one its torrent was made from (the layer
// cache is content-addressed and MakeTorrent hashed it): openLayer checks
// its size and the hashes of its first, middle and last pieces, which
// catches a wrong path or a truncated file without rehashing it all.
func openLayer(l Layer) (*layerInfo, *os.File, error) {
	mi, err := metainfo.Load(bytes.NewReader(l.Torrent))
	if err != nil {
		return nil, nil, fmt.Errorf("read metainfo: %w", err)
	}
	info, err := mi.UnmarshalInfo()
	if err != nil {
		return nil, nil, fmt.Errorf("read info: %w", err)
	}
	if info.IsDir() {
		return nil, nil, errors.New("torrent has several files; a layer torrent has one")
	}
	if info.PieceLength <= 0 || info.NumPieces() == 0 || info.TotalLength() <= 0 {
		return nil, nil, errors.New("torrent describes no data")
	}
	f, err := os.Open(l.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("open layer file: %w", err)
	}
	if err := spotCheck(f, &info); err != nil {
		f.Close()
		return nil, nil, err
	}
	return &layerInfo{
		infoHash:  mi.HashInfoBytes(),
		path:      l.Path,
		length:    info.TotalLength(),
		pieceLen:  info.PieceLength,
		numPieces: info.NumPieces(),
	}, f, nil
}

// spotCheck compares the file's size and a few piece hashes with the info.
func spotCheck(f *os.File, info *metainfo.Info) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat layer file: %w", err)
	}
	if fi.Size() != info.TotalLength() {
		return fmt.Errorf("%w: %d bytes, torrent says %d", ErrFileMismatch, fi.Size(), info.TotalLength())
	}
	n := info.NumPieces()
	for _, i := range []int{0, n / 2, n - 1} {
		p := info.Piece(i)
		h := sha1.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, p.Offset(), p.Length())); err != nil {
			return fmt.Errorf("read piece %d: %w", i, err)
		}
		if !bytes.Equal(h.Sum(nil), p.V1Hash().Unwrap().Bytes()) {
			return fmt.Errorf("%w: piece %d hash differs", ErrFileMismatch, i)
		}
	}
	return nil
}

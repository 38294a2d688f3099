package seed

import (
	"errors"
	"fmt"
	"math/bits"
	"os"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"
)

// Piece length bounds for AutoPieceLength.
const (
	MinPieceLength = 256 << 10
	MaxPieceLength = 4 << 20
	// targetPieces is the piece count AutoPieceLength aims at.
	targetPieces = 512
)

// AutoPieceLength chooses the piece length of a layer of size bytes: the
// power of two that gives about 512 pieces, between 256 KiB and 4 MiB.
//
// Why, for datacentre links (100 Mbit/s to 10 Gbit/s):
//   - A host can pass a piece on only once it has all of it and checked its
//     hash, so each relay hop adds one piece time: 4 MiB takes 0.34 s at
//     100 Mbit/s and 3.4 ms at 10 Gbit/s; 256 KiB takes 21 ms at 100 Mbit/s.
//     Small layers therefore get small pieces, or the first host would have
//     to finish a whole layer before sharing any of it.
//   - Every piece costs per-piece work in the client (request bookkeeping,
//     have messages, one hash job) and 20 bytes of info dict, so large layers
//     get larger pieces: 1 GiB is 512 pieces of 2 MiB and a 10 KiB info
//     dict; from 2 GiB on pieces stay at 4 MiB, and the job spec carrying
//     every torrent stays far below its 4 MiB line limit even for a 20 GB
//     image (5000 pieces, 100 KiB). On the loopback benchmark 1, 2 and
//     4 MiB pieces cost the same CPU per byte within noise.
//   - Hashing costs the same per byte whatever the piece size (SHA-1 runs at
//     about 2 GB/s here with SHA-NI); a corrupt piece wastes at most 4 MiB.
func AutoPieceLength(size int64) int64 {
	if size <= MinPieceLength*targetPieces {
		return MinPieceLength
	}
	// Round size/targetPieces up to a power of two.
	l := int64(1) << (64 - bits.LeadingZeros64(uint64(size/targetPieces-1)))
	return min(max(l, MinPieceLength), MaxPieceLength)
}

// MakeTorrent hashes the file at path into a single-file torrent and returns
// its bencoded metainfo and infohash. pieceLength 0 chooses
// AutoPieceLength. announce may be empty: nodes are given the job's announce
// URL separately, so the metainfo need not carry the token.
func MakeTorrent(path string, pieceLength int64, announce string) ([]byte, metainfo.Hash, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: %s is not a regular file", path)
	}
	if fi.Size() == 0 {
		return nil, metainfo.Hash{}, errors.New("make torrent: empty file")
	}
	if pieceLength == 0 {
		pieceLength = AutoPieceLength(fi.Size())
	}
	if pieceLength < 16<<10 || pieceLength&(pieceLength-1) != 0 {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: piece length %d is not a power of two of at least 16 KiB", pieceLength)
	}
	info := metainfo.Info{PieceLength: pieceLength}
	if err := info.BuildFromFilePath(path); err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: hash %s: %w", path, err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: encode info: %w", err)
	}
	mi := metainfo.MetaInfo{InfoBytes: infoBytes, Announce: announce, CreatedBy: "layercast"}
	b, err := bencode.Marshal(mi)
	if err != nil {
		return nil, metainfo.Hash{}, fmt.Errorf("make torrent: encode metainfo: %w", err)
	}
	return b, mi.HashInfoBytes(), nil
}

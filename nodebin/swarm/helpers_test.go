package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// writeLayer writes size pseudo-random bytes to dir/<digest-hex> and returns
// the layer with its metainfo.
func writeLayer(tb testing.TB, dir string, size, pieceLen int64, seed uint64) jobspec.Layer {
	tb.Helper()
	tmp := filepath.Join(dir, "tmp-layer")
	f, err := os.Create(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, size)); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	digest := "sha256:" + hex.EncodeToString(h.Sum(nil))
	path := filepath.Join(dir, strings.TrimPrefix(digest, "sha256:"))
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	info := metainfo.Info{PieceLength: pieceLen}
	if err := info.BuildFromFilePath(path); err != nil {
		tb.Fatal(err)
	}
	infoBytes, err := bencode.Marshal(info)
	if err != nil {
		tb.Fatal(err)
	}
	mi := metainfo.MetaInfo{InfoBytes: infoBytes}
	torrent, err := bencode.Marshal(mi)
	if err != nil {
		tb.Fatal(err)
	}
	return jobspec.Layer{DiffID: digest, ChainID: digest, Digest: digest, Size: size, MediaType: "tar", Torrent: torrent}
}

func fileDigest(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// newSeeder starts a Client that seeds layers already present in dir.
func newSeeder(tb testing.TB, dir string, layers []jobspec.Layer) *Client {
	tb.Helper()
	s, err := New(context.Background(), Config{Dir: dir, AllowedIPs: loopbackPeers()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	if err := s.Seed(layers); err != nil {
		tb.Fatal(err)
	}
	return s
}

// startDownload starts node downloading layer and waits until its torrent
// is added; the download's result comes on errc.
func startDownload(ctx context.Context, t *testing.T, node *Client, layer jobspec.Layer) (errc <-chan error, tor *torrent.Torrent) {
	t.Helper()
	c := make(chan error, 1)
	go func() { c <- node.Download(ctx, []jobspec.Layer{layer}, nil) }()
	if !waitFor(ctx, func() bool {
		if ts := node.cl.Torrents(); len(ts) == 1 {
			tor = ts[0]
		}
		return tor != nil
	}) {
		t.Fatal("the node added no torrent")
	}
	return c, tor
}

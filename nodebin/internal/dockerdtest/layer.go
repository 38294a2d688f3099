package dockerdtest

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// WriteLayer writes a layer tar holding one file of size random
// (incompressible) bytes, chosen by seed, and returns its diff ID.
func WriteLayer(tb testing.TB, path string, seed byte, size int64) string {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(f, h))
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprint("blob", seed), Size: size, Mode: 0o644}); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.NewChaCha8([32]byte{seed}), size); err != nil {
		tb.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

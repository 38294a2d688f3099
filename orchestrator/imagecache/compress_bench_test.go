package imagecache

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// BenchmarkLayerCompression measures what compressing a daemon-source layer
// on the bastion would cost (CPU seconds per GB of layer, from getrusage, so
// that other load on the machine counts less than in wall time) against
// what it saves (ratio = compressed ÷ uncompressed), and what unpacking
// costs a host. Layers: a tar of repetitive text, random bytes, and the
// tar named by LAYERCAST_BENCH_LAYER (e.g. a debootstrap root filesystem).
//
//	LAYERCAST_BENCH_LAYER=/tmp/rootfs.tar go test ./orchestrator/imagecache -run - -bench LayerCompression -benchtime 2x
func BenchmarkLayerCompression(b *testing.B) {
	layers := []struct {
		name string
		data func(b *testing.B) []byte
	}{
		{"text", func(*testing.B) []byte { return textLayer(64 << 20) }},
		{"random", func(*testing.B) []byte { return randomLayer(64 << 20) }},
	}
	if p := os.Getenv("LAYERCAST_BENCH_LAYER"); p != "" {
		layers = append(layers, struct {
			name string
			data func(b *testing.B) []byte
		}{"file", func(b *testing.B) []byte {
			d, err := os.ReadFile(p)
			if err != nil {
				b.Fatal(err)
			}
			return d
		}})
	}
	type codec struct {
		name string
		enc  func(w io.Writer) io.WriteCloser
		dec  func(r io.Reader) io.Reader
	}
	stdDec := func(r io.Reader) io.Reader { zr, _ := stdgzip.NewReader(r); return zr }
	zstdDec := func(r io.Reader) io.Reader { zr, _ := zstd.NewReader(r, zstd.WithDecoderConcurrency(1)); return zr }
	var codecs []codec
	for _, l := range []int{1, 6, 9} {
		codecs = append(codecs, codec{fmt.Sprintf("gzip-std-%d", l), func(w io.Writer) io.WriteCloser {
			zw, _ := stdgzip.NewWriterLevel(w, l)
			return zw
		}, stdDec})
	}
	for _, l := range []int{1, 6, 9} {
		codecs = append(codecs, codec{fmt.Sprintf("gzip-klauspost-%d", l), func(w io.Writer) io.WriteCloser {
			zw, _ := kgzip.NewWriterLevel(w, l)
			return zw
		}, stdDec})
	}
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		codecs = append(codecs, codec{"zstd-" + l.String(), func(w io.Writer) io.WriteCloser {
			zw, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(l), zstd.WithEncoderConcurrency(1))
			return zw
		}, zstdDec})
	}
	for _, l := range layers {
		b.Run(l.name, func(b *testing.B) {
			data := l.data(b)
			for _, c := range codecs {
				b.Run(c.name, func(b *testing.B) {
					b.SetBytes(int64(len(data)))
					var out bytes.Buffer
					var cpu time.Duration
					for b.Loop() {
						out.Reset()
						start := cpuTime()
						zw := c.enc(&out)
						zw.Write(data)
						zw.Close()
						cpu += cpuTime() - start
					}
					gb := float64(len(data)) * float64(b.N) / 1e9
					b.ReportMetric(float64(out.Len())/float64(len(data)), "ratio")
					b.ReportMetric(cpu.Seconds()/gb, "cpu-s/GB")
					start := cpuTime()
					if _, err := io.Copy(io.Discard, c.dec(bytes.NewReader(out.Bytes()))); err != nil {
						b.Fatal(err)
					}
					b.ReportMetric((cpuTime()-start).Seconds()/(float64(len(data))/1e9), "unpack-cpu-s/GB")
				})
			}
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// textLayer is a tar of log-like text, about as compressible as text files.
func textLayer(size int) []byte {
	var text bytes.Buffer
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"layer", "daemon", "bastion", "torrent", "swarm", "digest", "chain", "host", "peer", "seeder", "error", "info", "debug"}
	for text.Len() < size {
		fmt.Fprintf(&text, "2025-01-%02d %02d:%02d:%02d %s", r.IntN(28)+1, r.IntN(24), r.IntN(60), r.IntN(60), words[r.IntN(len(words))])
		for range r.IntN(10) + 3 {
			text.WriteString(" " + words[r.IntN(len(words))])
		}
		fmt.Fprintf(&text, " id=%d\n", r.IntN(100000))
	}
	return tarOf(text.Bytes()[:size])
}

func randomLayer(size int) []byte {
	d := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(d)
	return tarOf(d)
}

func tarOf(b []byte) []byte {
	var buf bytes.Buffer
	saveTarFile(&buf, "data", b)
	return buf.Bytes()
}

func saveTarFile(w io.Writer, name string, b []byte) {
	tw := tar.NewWriter(w)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(b)), Mode: 0o644})
	tw.Write(b)
	tw.Close()
}

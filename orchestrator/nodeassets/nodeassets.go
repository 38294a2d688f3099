// Package nodeassets holds the node binaries that layercast uploads to hosts,
// gzip-compressed, one per architecture. `make` builds them into bin/ before
// it builds layercast, which embeds them. A layercast installed with
// `go install` carries none (go install cannot run make); a Set with a
// Builder then compiles the missing ones with the local Go toolchain on
// first use (see Builder).
package nodeassets

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed bin
var embedded embed.FS

// ErrMissing means no node binary was built for an architecture.
var ErrMissing = errors.New("no node binary for this architecture")

// Binary is one node binary, compressed for upload.
type Binary struct {
	Arch string // GOARCH: amd64, arm64
	Gz   []byte // gzip of the static binary
	// SHA256 is the hex sha256 of the uncompressed binary.
	SHA256 string
	Size   int64 // uncompressed
	// Version is the version the binary was built as, from the
	// .version file make writes beside it; "unknown" without one.
	Version string
}

// Set finds node binaries: a directory given by the operator first, then
// the ones built into the command. A Set is safe for concurrent use.
type Set struct {
	fsys fs.FS
	dir  string

	// builder, when set, builds the binaries fsys lacks.
	builder *Builder
	// building holds one token: one build at a time, waited for with a
	// context.
	building chan struct{}
	// built are the binaries builder made in this process, by arch.
	built map[string]*Binary

	// mu guards read, the binaries read from fsys so far, by arch: a job
	// asks once per host, and each host's pipeline keeps its *Binary
	// until the job ends, so one copy per architecture is all a job
	// holds (a copy per host was 38 MB of bastion memory each).
	mu   sync.Mutex
	read map[string]*Binary
}

// Embedded returns the binaries built into this command.
func Embedded() *Set {
	sub, _ := fs.Sub(embedded, "bin") // "bin" is a constant path that exists
	return &Set{fsys: sub, dir: "built into layercast"}
}

// Dir returns binaries from a directory (files layercast-node-linux-ARCH.gz).
func Dir(dir string) *Set { return &Set{fsys: os.DirFS(dir), dir: dir} }

// FileName is the name of the compressed node binary for arch.
func FileName(arch string) string { return "layercast-node-linux-" + arch + ".gz" }

// BuildMissing returns a Set with the binaries of s that builds those s
// lacks with b, once per architecture and process.
func (s *Set) BuildMissing(b Builder) *Set {
	building := make(chan struct{}, 1)
	building <- struct{}{}
	return &Set{fsys: s.fsys, dir: s.dir, builder: &b, building: building, built: map[string]*Binary{}}
}

// Builder is what BuildMissing was given, or nil.
func (s *Set) Builder() *Builder { return s.builder }

// Get returns the binary for arch (see GetContext). It is GetContext
// without a way to cancel a build.
func (s *Set) Get(arch string) (*Binary, error) {
	return s.GetContext(context.Background(), arch)
}

// GetContext returns the binary for arch. Its sha256 is the one `make`
// wrote beside it (SumFileName); without that file the binary is unpacked
// to compute it, which also checks that it decompresses. Either way each
// host checks the sum of what it unpacked before it runs it. When the set
// lacks the binary and has a Builder, it builds it first (which can take
// a minute); the error then wraps ErrMissing and, without a Go toolchain,
// ErrNoToolchain.
func (s *Set) GetContext(ctx context.Context, arch string) (*Binary, error) {
	b, err := s.readOnce(arch)
	if s.builder == nil || !errors.Is(err, ErrMissing) {
		return b, err
	}
	select {
	case <-s.building:
	case <-ctx.Done():
		return nil, fmt.Errorf("build node binary for linux/%s: %w", arch, ctx.Err())
	}
	defer func() { s.building <- struct{}{} }()
	if b, ok := s.built[arch]; ok {
		return b, nil
	}
	gz, version, err := s.builder.Build(ctx, arch)
	if err != nil {
		return nil, err
	}
	b, err = decode(arch, gz, version)
	if err != nil {
		return nil, fmt.Errorf("built %w", err)
	}
	s.built[arch] = b
	return b, nil
}

// Prefetch reads the binary for arch if the set holds it, so that a later
// Get finds its sums ready; it never builds. A failed read is left for Get
// to report.
func (s *Set) Prefetch(arch string) { _, _ = s.readOnce(arch) }

// readOnce is readFile, once per architecture and Set; a failed read is
// tried again next time.
func (s *Set) readOnce(arch string) (*Binary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.read[arch]; ok {
		return b, nil
	}
	b, err := s.readFile(arch)
	if err != nil {
		return nil, err
	}
	if s.read == nil {
		s.read = map[string]*Binary{}
	}
	s.read[arch] = b
	return b, nil
}

func (s *Set) readFile(arch string) (*Binary, error) {
	gz, err := fs.ReadFile(s.fsys, FileName(arch))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: linux/%s (looked in %s; build it with `make nodebin`)", ErrMissing, arch, s.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read node binary for linux/%s: %w", arch, err)
	}
	// Unpacking 22 MB to hash it takes half a CPU-second, and every
	// host's setup waits for the sum: on the lab's two cores, busy with
	// 40 SSH handshakes, that held all 40 hosts until 1.7 s into the job.
	if sum, ok := s.sum(arch); ok {
		if size, ok := gzipSize(gz); ok {
			return &Binary{Arch: arch, Gz: gz, SHA256: sum, Size: size, Version: s.version(arch)}, nil
		}
	}
	return decode(arch, gz, s.version(arch))
}

// SumFileName is the file beside FileName(arch) that holds the sha256 of
// the uncompressed binary, as sha256sum writes it.
func SumFileName(arch string) string { return strings.TrimSuffix(FileName(arch), ".gz") + ".sha256" }

// sum returns the hex sha256 in arch's sum file, if it holds one.
func (s *Set) sum(arch string) (string, bool) {
	b, err := fs.ReadFile(s.fsys, SumFileName(arch))
	if err != nil {
		return "", false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != sha256.Size*2 {
		return "", false
	}
	if _, err := hex.DecodeString(f[0]); err != nil {
		return "", false
	}
	return strings.ToLower(f[0]), true
}

// gzipSize returns the uncompressed size a gzip stream records in its
// trailer (modulo 4 GiB, far above any node binary).
func gzipSize(gz []byte) (int64, bool) {
	const header, trailer = 10, 8
	if len(gz) < header+trailer || gz[0] != 0x1f || gz[1] != 0x8b {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint32(gz[len(gz)-4:])), true
}

// decode checks that gz decompresses and fills in the binary's sums,
// streaming: the decompressed binary is never held.
func decode(arch string, gz []byte, version string) (*Binary, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, fmt.Errorf("node binary for linux/%s: %w", arch, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, zr)
	if err != nil {
		return nil, fmt.Errorf("node binary for linux/%s: %w", arch, err)
	}
	return &Binary{Arch: arch, Gz: gz, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Version: version}, nil
}

func (s *Set) version(arch string) string {
	b, err := fs.ReadFile(s.fsys, strings.TrimSuffix(FileName(arch), ".gz")+".version")
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "unknown"
	}
	return string(bytes.TrimSpace(b))
}

// Arches lists the architectures present, not counting those a Builder
// would build.
func (s *Set) Arches() []string {
	var out []string
	ents, _ := fs.ReadDir(s.fsys, ".")
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "layercast-node-linux-") && filepath.Ext(n) == ".gz" {
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(n, "layercast-node-linux-"), ".gz"))
		}
	}
	return out
}

// UnameArch maps `uname -m` output to GOARCH.
func UnameArch(machine string) (string, error) {
	switch strings.TrimSpace(machine) {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64", "armv8l":
		return "arm64", nil
	}
	return "", fmt.Errorf("unsupported architecture %q (layercast has node binaries for x86_64 and aarch64)", machine)
}

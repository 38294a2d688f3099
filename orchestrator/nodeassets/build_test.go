package nodeassets

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func gzipped(t *testing.T, raw []byte) []byte {
	t.Helper()
	gz, err := gzipBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	return gz
}

// TestSet_BuildsAMissingBinaryFromTheSourceTree is the `go install` case:
// no node binary built in, so the set compiles one from this checkout.
func TestSet_BuildsAMissingBinaryFromTheSourceTree(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the node binary")
	}
	cache := t.TempDir()
	set := Dir(t.TempDir()).BuildMissing(Builder{CacheDir: cache})
	if !strings.Contains(set.Builder().Describe(), "source tree") {
		t.Fatalf("builder would build from %s, want this source tree", set.Builder().Describe())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	b, err := set.GetContext(ctx, "arm64")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built linux/arm64 node binary in %s: %.1f MB, %.1f MB gzipped, version %q",
		time.Since(start).Round(time.Second), float64(b.Size)/1e6, float64(len(b.Gz))/1e6, b.Version)

	zr, err := gzip.NewReader(bytes.NewReader(b.Gz))
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytesReaderAt(t, zr))
	if err != nil {
		t.Fatalf("built binary is not ELF: %v", err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("machine %s, want EM_AARCH64", f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has an ELF interpreter: not static")
		}
	}
	if !strings.Contains(b.Version, "from ") {
		t.Errorf("version %q does not name the source tree", b.Version)
	}
	kept, err := os.ReadFile(filepath.Join(cache, "source", FileName("arm64")))
	if err != nil || !bytes.Equal(kept, b.Gz) {
		t.Errorf("built binary not kept in the cache dir (err %v)", err)
	}
	again, err := set.GetContext(ctx, "arm64")
	if err != nil || again != b {
		t.Errorf("second Get built again or failed: %v", err)
	}
}

func bytesReaderAt(t *testing.T, r *gzip.Reader) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

func TestSet_UsesTheBinaryItHasWithoutBuilding(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("node binary for amd64")
	if err := os.WriteFile(filepath.Join(dir, FileName("amd64")), gzipped(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	set := Dir(dir).BuildMissing(Builder{Go: "no-such-go-tool", CacheDir: t.TempDir()})
	b, err := set.Get("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if b.Size != int64(len(raw)) {
		t.Errorf("size %d, want %d", b.Size, len(raw))
	}
}

func TestSet_WithoutGoSaysHowToGetAReleaseBuild(t *testing.T) {
	set := Dir(t.TempDir()).BuildMissing(Builder{Go: "no-such-go-tool", CacheDir: t.TempDir()})
	_, err := set.Get("arm64")
	if !errors.Is(err, ErrMissing) || !errors.Is(err, ErrNoToolchain) {
		t.Fatalf("err %v, want ErrMissing and ErrNoToolchain", err)
	}
	if !strings.Contains(err.Error(), "release build") || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("error does not say which binary or how to get a release build: %v", err)
	}
}

func TestSet_WithoutBuilderReportsMissing(t *testing.T) {
	_, err := Dir(t.TempDir()).Get("amd64")
	if !errors.Is(err, ErrMissing) {
		t.Fatalf("err %v, want ErrMissing", err)
	}
}

func TestBuilder_FetchesTheModuleVersionWhenTheTreeIsGone(t *testing.T) {
	b := &Builder{
		main:     &debug.Module{Path: ModulePath, Version: "v1.2.3"},
		thisFile: "/gone/orchestrator/nodeassets/build.go",
	}
	src, err := b.source()
	if err != nil {
		t.Fatal(err)
	}
	if src.download != ModulePath+"@v1.2.3" || src.cacheKey != "v1.2.3" || src.version != "v1.2.3" {
		t.Errorf("source %+v, want a download of %s@v1.2.3 kept as v1.2.3", src, ModulePath)
	}
}

// TestBuilder_ReusesAModuleVersionBuiltBefore: a binary built from a
// module version is kept; the next process takes it without running go
// (Go is `true` here, which would make a fetch fail).
func TestBuilder_ReusesAModuleVersionBuiltBefore(t *testing.T) {
	cache := t.TempDir()
	want := gzipped(t, []byte("kept node binary"))
	if err := os.MkdirAll(filepath.Join(cache, "v1.2.3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cache, "v1.2.3", FileName("amd64")), want, 0o644); err != nil {
		t.Fatal(err)
	}
	set := Dir(t.TempDir()).BuildMissing(Builder{
		Go:       "true",
		CacheDir: cache,
		main:     &debug.Module{Path: ModulePath, Version: "v1.2.3"},
		thisFile: "/gone/orchestrator/nodeassets/build.go",
	})
	b, err := set.Get("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.Gz, want) || b.Version != "v1.2.3" {
		t.Errorf("got %d bytes version %q, want the kept binary as v1.2.3", len(b.Gz), b.Version)
	}
	if _, err := set.Get("arm64"); err == nil {
		t.Error("arm64 was not kept and `true` cannot fetch it, yet Get succeeded")
	}
}

func TestBuilder_LocalBuildWithoutItsTreeCannotBuild(t *testing.T) {
	for _, v := range []string{"(devel)", "v0.0.0-20251126120000-abcdefabcdef+dirty", ""} {
		b := &Builder{
			Go:       "true",
			CacheDir: t.TempDir(),
			main:     &debug.Module{Path: ModulePath, Version: v},
			thisFile: "github.com/layercast/layercast/orchestrator/nodeassets/build.go", // -trimpath
		}
		_, _, err := b.Build(context.Background(), "amd64")
		if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "release build") {
			t.Errorf("version %q: err %v, want ErrMissing naming release builds", v, err)
		}
	}
}

func TestBuilder_RefusesUnknownArchitectures(t *testing.T) {
	b := &Builder{Go: "true", CacheDir: t.TempDir()}
	if _, _, err := b.Build(context.Background(), "riscv64"); !errors.Is(err, ErrMissing) {
		t.Errorf("err %v, want ErrMissing", err)
	}
}

func TestSet_CancelledWhileWaitingForABuild(t *testing.T) {
	set := Dir(t.TempDir()).BuildMissing(Builder{Go: "true", CacheDir: t.TempDir()})
	<-set.building // a build in progress
	defer func() { set.building <- struct{}{} }()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := set.GetContext(ctx, "amd64"); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestSet_ReadsABinaryOncePerArchitecture(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("node binary for arm64")
	path := filepath.Join(dir, FileName("arm64"))
	if err := os.WriteFile(path, gzipped(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	set := Dir(dir)
	first, err := set.Get("arm64")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	if first.SHA256 != hex.EncodeToString(sum[:]) || first.Size != int64(len(raw)) {
		t.Errorf("binary %+v, want the sums of %q", first, raw)
	}
	// Every host of a job asks; they share one copy, read once: a file
	// gone since is not read again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	again, err := set.Get("arm64")
	if err != nil || again != first {
		t.Errorf("second Get: %p, %v; want the first read's %p", again, err, first)
	}
	if _, err := set.Get("amd64"); !errors.Is(err, ErrMissing) {
		t.Errorf("missing arch: %v, want ErrMissing", err)
	}
}

func TestSet_PrefetchReadsWhatItHoldsAndNeverBuilds(t *testing.T) {
	dir := t.TempDir()
	raw := []byte("node binary for amd64")
	path := filepath.Join(dir, FileName("amd64"))
	if err := os.WriteFile(path, gzipped(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	// A builder that would fail loudly: Prefetch must not call it.
	set := Dir(dir).BuildMissing(Builder{Go: "no-such-go-tool", CacheDir: t.TempDir()})
	set.Prefetch("amd64")
	set.Prefetch("arm64") // not held: nothing to read, nothing built
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	b, err := set.Get("amd64")
	if err != nil || b.Size != int64(len(raw)) {
		t.Fatalf("Get after Prefetch and the file's removal: %+v, %v; want the prefetched binary", b, err)
	}
	if _, err := set.Get("arm64"); !errors.Is(err, ErrNoToolchain) {
		t.Errorf("arm64 after Prefetch: %v, want the build's ErrNoToolchain (Prefetch left it alone)", err)
	}
}

func TestSet_TakesTheSumMakeWroteBesideTheBinaryWithoutUnpackingIt(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte("node binary for amd64 "), 1000)
	gz := gzipped(t, raw)
	// A body that no longer unpacks: only the sum file can give the sum
	// now. (Each host checks the sum of what it unpacked before running
	// it, so such a file fails there, not here.)
	gz[len(gz)/2] ^= 0xff
	if _, err := decode("amd64", gz, ""); err == nil {
		t.Fatal("the corrupted body still unpacks; the test proves nothing")
	}
	sum := sha256.Sum256(raw)
	files := map[string]string{
		FileName("amd64"):    string(gz),
		SumFileName("amd64"): hex.EncodeToString(sum[:]) + "  layercast-node-linux-amd64\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := Dir(dir).Get("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if b.SHA256 != hex.EncodeToString(sum[:]) || b.Size != int64(len(raw)) {
		t.Errorf("binary sha256 %s size %d, want %x and %d", b.SHA256, b.Size, sum, len(raw))
	}

	// A sum file that holds no sum is not taken: the binary is unpacked.
	if err := os.WriteFile(filepath.Join(dir, SumFileName("amd64")), []byte("not a sum\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Dir(dir).Get("amd64"); err == nil {
		t.Error("a broken sum file was taken instead of unpacking the binary")
	}
}

func TestEmbedded_SumFilesMatchTheirBinaries(t *testing.T) {
	set := Embedded()
	checked := 0
	for _, arch := range set.Arches() {
		sum, ok := set.sum(arch)
		if !ok {
			continue
		}
		gz, err := fs.ReadFile(set.fsys, FileName(arch))
		if err != nil {
			t.Fatal(err)
		}
		b, err := decode(arch, gz, "")
		if err != nil {
			t.Fatal(err)
		}
		size, _ := gzipSize(gz)
		if b.SHA256 != sum || b.Size != size {
			t.Errorf("linux/%s: unpacked sha256 %s size %d; the sum file and trailer say %s and %d", arch, b.SHA256, b.Size, sum, size)
		}
		checked++
	}
	if checked == 0 {
		t.Skip("no node binaries with sum files built into this test binary (run `make nodebin`)")
	}
}

package nodeassets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// ModulePath is the module layercast and its node binary belong to.
const ModulePath = "github.com/layercast/layercast"

// nodePackage is the node binary's main package, relative to the module root.
const nodePackage = "./nodebin/cmd/layercast-node"

// ErrNoToolchain means a node binary had to be built and no Go toolchain
// was found.
var ErrNoToolchain = errors.New("no Go toolchain found")

// ReleaseHint tells the operator how to get a layercast that carries its
// node binaries.
const ReleaseHint = "install Go 1.26 or later (https://go.dev/dl) so layercast can build it, " +
	"or use a release build of layercast (`make release` writes them to dist/), " +
	"which carries the node binaries for amd64 and arm64"

// Builder builds a node binary with the local Go toolchain: static
// (CGO_ENABLED=0), GOOS=linux, for the host's GOARCH, from the same source
// as the running layercast. The source is, in this order:
//
//  1. SourceDir, when set;
//  2. the module tree this package was compiled from, when it is still on
//     disk: the checkout for `go build`/`go install` inside one, the module
//     cache for `go install ...@version` (builds without -trimpath);
//  3. the module version this command was built as, fetched with
//     `go mod download` (a version with "+dirty" or "(devel)" cannot be
//     fetched).
//
// Binaries built from a module version are kept in CacheDir and reused by
// later processes; those from a source tree are rebuilt once per process,
// since the tree may have changed (the Go build cache keeps that quick).
type Builder struct {
	// Go is the go command; "" looks it up in PATH.
	Go string
	// CacheDir holds the built binaries; "" means
	// os.UserCacheDir()/layercast/node-binaries.
	CacheDir string
	// SourceDir is a module tree to build from; "" finds one (see above).
	SourceDir string
	Logger    *slog.Logger

	// build replaces debug.ReadBuildInfo's main module in tests.
	main *debug.Module
	// thisFile replaces the compile-time path of this file in tests.
	thisFile string
}

// source is where a build takes the node package from.
type source struct {
	dir     string // module root
	version string // written into the binary and the .version file
	// cacheKey names CacheDir's subdirectory for an immutable module
	// version; "" for a source tree, which is rebuilt.
	cacheKey string
	// download is the module@version to fetch into dir first.
	download string
}

func (s source) String() string {
	if s.download != "" {
		return s.download + " (fetched with `go mod download`)"
	}
	return "the source tree " + s.dir
}

// Describe says where b would take the node package from, without
// building or fetching anything.
func (b *Builder) Describe() string {
	src, err := b.source()
	if err != nil {
		return err.Error()
	}
	return src.String()
}

// Build compiles the node binary for linux/arch and returns it gzipped,
// with the version it was built as.
func (b *Builder) Build(ctx context.Context, arch string) (gz []byte, version string, err error) {
	if arch != "amd64" && arch != "arm64" {
		return nil, "", fmt.Errorf("%w: linux/%s is not an architecture layercast supports", ErrMissing, arch)
	}
	goTool, err := b.goTool()
	if err != nil {
		return nil, "", fmt.Errorf("%w for linux/%s, and building one needs Go: %w; %s", ErrMissing, arch, err, ReleaseHint)
	}
	src, err := b.source()
	if err != nil {
		return nil, "", err
	}
	cacheDir, err := b.cacheDir()
	if err != nil {
		return nil, "", err
	}
	key := src.cacheKey
	if key == "" {
		key = "source"
	}
	dir := filepath.Join(cacheDir, key)
	out := filepath.Join(dir, FileName(arch))
	if src.cacheKey != "" {
		if gz, err := os.ReadFile(out); err == nil {
			return gz, src.version, nil
		}
	}
	log := b.logger()
	log.Warn("this layercast carries no node binary for linux/"+arch+"; building one with the local Go toolchain (once)", "source", src.String(), "go", goTool)
	if src.download != "" {
		if src.dir, err = download(ctx, goTool, src.download); err != nil {
			return nil, "", err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", fmt.Errorf("build node binary: %w", err)
	}
	raw, err := compile(ctx, goTool, src, arch, dir)
	if err != nil {
		return nil, "", err
	}
	gz, err = gzipBytes(raw)
	if err != nil {
		return nil, "", fmt.Errorf("compress node binary: %w", err)
	}
	if err := writeAtomic(out, gz); err != nil {
		return nil, "", fmt.Errorf("keep node binary: %w", err)
	}
	if err := writeAtomic(strings.TrimSuffix(out, ".gz")+".version", []byte(src.version+"\n")); err != nil {
		return nil, "", fmt.Errorf("keep node binary: %w", err)
	}
	return gz, src.version, nil
}

func (b *Builder) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

func (b *Builder) goTool() (string, error) {
	name := b.Go
	if name == "" {
		name = "go"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w (looked for %q in PATH)", ErrNoToolchain, name)
	}
	return p, nil
}

func (b *Builder) cacheDir() (string, error) {
	if b.CacheDir != "" {
		return b.CacheDir, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir for node binaries: %w", err)
	}
	return filepath.Join(d, "layercast", "node-binaries"), nil
}

func (b *Builder) mainModule() *debug.Module {
	if b.main != nil {
		return b.main
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return &bi.Main
	}
	return &debug.Module{}
}

// source picks where to build from (see Builder).
func (b *Builder) source() (source, error) {
	main := b.mainModule()
	version := main.Version
	if version == "" {
		version = "(devel)"
	}
	if b.SourceDir != "" {
		if err := isModuleRoot(b.SourceDir); err != nil {
			return source{}, fmt.Errorf("node binary source: %w", err)
		}
		return source{dir: b.SourceDir, version: version + " from " + b.SourceDir}, nil
	}
	file := b.thisFile
	if file == "" {
		_, file, _, _ = runtime.Caller(0)
	}
	// This file is ROOT/orchestrator/nodeassets/build.go.
	if root := filepath.Dir(filepath.Dir(filepath.Dir(file))); filepath.IsAbs(file) && isModuleRoot(root) == nil {
		return source{dir: root, version: version + " from " + root}, nil
	}
	if main.Path == ModulePath && fetchable(version) {
		return source{version: version, cacheKey: version, download: ModulePath + "@" + version}, nil
	}
	return source{}, fmt.Errorf("%w for this architecture, and this layercast (%s %s) was built from a source tree that is gone, so there is nothing to build one from; %s",
		ErrMissing, cmpOr(main.Path, "unknown module"), version, ReleaseHint)
}

// fetchable says whether the module proxy can serve version: a release or
// pseudo-version, not "(devel)" nor a "+dirty" local build.
func fetchable(version string) bool {
	return strings.HasPrefix(version, "v") && !strings.ContainsAny(version, "+ ()")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// isModuleRoot checks that dir holds layercast's go.mod and the node package.
func isModuleRoot(dir string) error {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return fmt.Errorf("%s is not a layercast source tree: %w", dir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			if strings.Trim(fields[1], `"`) != ModulePath {
				return fmt.Errorf("%s holds module %s, not %s", dir, fields[1], ModulePath)
			}
			if _, err := os.Stat(filepath.Join(dir, nodePackage, "main.go")); err != nil {
				return fmt.Errorf("%s lacks the node package: %w", dir, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%s/go.mod names no module", dir)
}

// download fetches module@version into the module cache and returns its
// directory.
func download(ctx context.Context, goTool, modVersion string) (string, error) {
	tmp, err := os.MkdirTemp("", "layercast-node-build-")
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", modVersion, err)
	}
	defer os.RemoveAll(tmp)
	// Run outside any module, so that only the command line names one.
	cmd := exec.CommandContext(ctx, goTool, "mod", "download", "-json", modVersion)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Error != "" || info.Dir == "" || runErr != nil {
		msg := strings.TrimSpace(cmpOr(info.Error, stderr.String()))
		return "", fmt.Errorf("fetch %s to build the node binary: %s (%v); %s", modVersion, msg, runErr, ReleaseHint)
	}
	return info.Dir, nil
}

// compile runs go build for linux/arch in src.dir and returns the binary.
func compile(ctx context.Context, goTool string, src source, arch, outDir string) ([]byte, error) {
	tmp, err := os.MkdirTemp(outDir, ".build-*")
	if err != nil {
		return nil, fmt.Errorf("build node binary: %w", err)
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "layercast-node")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath",
		"-ldflags", "-s -w -X 'main.version="+src.version+"'", "-o", bin, nodePackage)
	cmd.Dir = src.dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOWORK=off", "GOFLAGS=")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("build node binary for linux/%s: %w", arch, ctx.Err())
		}
		return nil, fmt.Errorf("build node binary for linux/%s in %s: %w\n%s", arch, src.dir, err, strings.TrimSpace(output.String()))
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("build node binary for linux/%s: %w", arch, err)
	}
	return raw, nil
}

func gzipBytes(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeAtomic writes b to path through a temp file in the same directory.
func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

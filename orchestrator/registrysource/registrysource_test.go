package registrysource_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/registrysource"
	"github.com/layercast/layercast/orchestrator/registrysource/registrytest"
)

var (
	amd64 = imagecache.HostPlatform("linux", "x86_64")
	arm64 = imagecache.HostPlatform("linux", "aarch64")
)

// noDockerConfig points the default keychain at an empty Docker config,
// so that the machine's own never takes part.
func noDockerConfig(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func newSource(t *testing.T, dir string, rec *registrytest.Recorder) *registrysource.Source {
	t.Helper()
	c, err := imagecache.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return registrysource.New(c, registrysource.Options{Transport: rec})
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func fileDigest(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha(b)
}

func blobGets(rec *registrytest.Recorder) map[string]int {
	n := map[string]int{}
	for _, r := range rec.Requests() {
		if r.Blob() {
			n[filepath.Base(r.Path)]++
		}
	}
	return n
}

// mixedIndex pushes an index with a linux/amd64 and a linux/arm64 image
// sharing their base layer, and returns it with the layer tars.
type mixedFixture struct {
	ref      string
	amd, arm v1.Image
	base     []byte
	amdTop   []byte
	armTop   []byte
}

func pushMixed(t *testing.T, reg *registrytest.Registry, repoTag string) mixedFixture {
	f := mixedFixture{
		base:   registrytest.LayerTar(1, 300_000),
		amdTop: registrytest.LayerTar(2, 120_000),
		armTop: registrytest.LayerTar(3, 90_000),
	}
	base := registrytest.GzipLayer(t, f.base)
	f.amd = registrytest.Image(t, "linux/amd64", false, base, registrytest.GzipLayer(t, f.amdTop))
	f.arm = registrytest.Image(t, "linux/arm64/v8", true, base, registrytest.GzipLayer(t, f.armTop, types.OCILayer))
	f.ref = reg.PushIndex(t, repoTag, registrytest.Index(t, f.amd, f.arm))
	return f
}

func TestFetch_MixedFleetGetsEachPlatformVerifiedWithSharedLayersOnce(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	f := pushMixed(t, reg, "team/app:v2")
	rec := &registrytest.Recorder{}
	src := newSource(t, t.TempDir(), rec)
	ctx := t.Context()

	rel, err := src.Resolve(ctx, f.ref)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(rel.Platforms()); got != "[linux/amd64 linux/arm64/v8]" {
		t.Fatalf("platforms %s", got)
	}
	if n := len(blobGets(rec)); n != 2 {
		t.Errorf("Resolve fetched %d blobs, want the 2 configs only", n)
	}
	if err := src.Fetch(ctx, rel, amd64, arm64, amd64); err != nil {
		t.Fatal(err)
	}
	for blob, n := range blobGets(rec) {
		if n != 1 {
			t.Errorf("blob %s fetched %d times", blob, n)
		}
	}
	if n := len(blobGets(rec)); n != 5 {
		t.Errorf("fetched %d distinct blobs, want 2 configs + 3 layers (the base once)", n)
	}
	for _, c := range []struct {
		host      imagecache.Platform
		img       v1.Image
		tars      [][]byte
		mediaType string
	}{
		{amd64, f.amd, [][]byte{f.base, f.amdTop}, imagecache.MediaTarGzip},
		{arm64, f.arm, [][]byte{f.base, f.armTop}, imagecache.MediaTarGzip},
	} {
		im, err := rel.Select(c.host)
		if err != nil {
			t.Fatal(err)
		}
		if want := registrytest.ConfigDigest(t, c.img); im.ID != want || fileDigest(t, im.ConfigPath) != want {
			t.Errorf("%s: image ID %s, want %s", c.host, im.ID, want)
		}
		chain := ""
		for i, l := range im.Layers {
			chain = jobspec.ChainID(chain, sha(c.tars[i]))
			if l.DiffID != sha(c.tars[i]) || l.ChainID != chain || l.MediaType != c.mediaType || l.UnpackedSize != int64(len(c.tars[i])) {
				t.Errorf("%s layer %d: %+v", c.host, i, l)
			}
			if fileDigest(t, l.Path) != l.Digest || l.Digest == l.DiffID {
				t.Errorf("%s layer %d: cached file is not the compressed blob %s", c.host, i, l.Digest)
			}
		}
	}
	ims, _ := rel.SelectAll([]imagecache.Platform{amd64, arm64})
	if n := len(imagecache.Layers(ims)); n != 3 {
		t.Errorf("layers to seed: %d, want 3", n)
	}
}

func TestFetch_SecondJobTransfersNothing(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	f := pushMixed(t, reg, "team/app:v2")
	dir := t.TempDir()
	first := &registrytest.Recorder{}
	src := newSource(t, dir, first)
	rel, err := src.Resolve(t.Context(), f.ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(t.Context(), rel, amd64, arm64); err != nil {
		t.Fatal(err)
	}

	again := &registrytest.Recorder{}
	src = newSource(t, dir, again)
	rel2, err := src.Resolve(t.Context(), f.ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(t.Context(), rel2, amd64, arm64); err != nil {
		t.Fatal(err)
	}
	var manifests int
	for _, r := range again.Requests() {
		if r.Blob() {
			t.Errorf("second job fetched blob %s", r.Path)
		}
		if r.Manifest() {
			manifests++
		}
	}
	if manifests != 1 {
		t.Errorf("second job read %d manifests, want 1 (the tag's index; its images' manifests are cached)", manifests)
	}
	for i := range rel.Images {
		if !slices.Equal(rel.Images[i].Layers, rel2.Images[i].Layers) {
			t.Errorf("second resolve of %s differs", rel.Images[i].Platform)
		}
	}
}

// bigImage pushes a one-platform image with a 3 MB (incompressible) layer.
func bigImage(t *testing.T, reg *registrytest.Registry) (string, v1.Layer) {
	layer := registrytest.GzipLayer(t, registrytest.LayerTar(9, 3_000_000))
	return reg.Push(t, "team/big:1", registrytest.Image(t, "linux/amd64", false, layer)), layer
}

func TestFetch_InterruptedBlobContinuesWithARangeRequest(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	ref, layer := bigImage(t, reg)
	ld, _ := layer.Digest()
	size, _ := layer.Size()
	cuts := 0
	rec := &registrytest.Recorder{Cut: func(r *http.Request) int64 {
		if strings.HasSuffix(r.URL.Path, ld.String()) && cuts == 0 {
			cuts++
			return 1_000_000
		}
		return 0
	}}
	src := newSource(t, t.TempDir(), rec)
	rel, err := src.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(t.Context(), rel, amd64); err != nil {
		t.Fatal(err)
	}
	var got []string
	var total int64
	for _, r := range rec.Requests() {
		if r.Blob() && strings.HasSuffix(r.Path, ld.String()) {
			got = append(got, fmt.Sprintf("%d %q", r.Status, r.Range))
			total += r.Bytes()
		}
	}
	if want := []string{`200 ""`, `206 "bytes=1000000-"`}; !slices.Equal(got, want) {
		t.Fatalf("layer requests %v, want %v", got, want)
	}
	if total != size {
		t.Errorf("transferred %d bytes for a %d-byte blob", total, size)
	}
	if fileDigest(t, rel.Images[0].Layers[0].Path) != ld.String() {
		t.Error("cached layer does not match its digest")
	}
}

func TestFetch_CancelledJobLeavesAPartialTheNextJobContinues(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	ref, layer := bigImage(t, reg)
	ld, _ := layer.Digest()
	size, _ := layer.Size()
	dir := t.TempDir()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// The connection drops after 700 kB; while the download continues,
	// the operator presses ctrl-c.
	rec := &registrytest.Recorder{Cut: func(r *http.Request) int64 {
		if !strings.HasSuffix(r.URL.Path, ld.String()) {
			return 0
		}
		if r.Header.Get("Range") != "" {
			cancel()
		}
		return 700_000
	}}
	src := newSource(t, dir, rec)
	rel, err := src.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(ctx, rel, amd64); err == nil {
		t.Fatal("cancelled fetch succeeded")
	}
	final := rel.Images[0].Layers[0].Path
	if _, err := os.Stat(final); err == nil {
		t.Fatal("a cancelled download left a file under the blob's final name")
	}
	partial := filepath.Join(dir, "partial", strings.TrimPrefix(ld.String(), "sha256:"))
	st, err := os.Stat(partial)
	if err != nil || st.Size() != 700_000 {
		t.Fatalf("partial file: %v, %d bytes", err, st.Size())
	}
	kept := st.Size()

	next := &registrytest.Recorder{}
	src = newSource(t, dir, next)
	rel, err = src.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(t.Context(), rel, amd64); err != nil {
		t.Fatal(err)
	}
	for _, r := range next.Requests() {
		if r.Blob() && strings.HasSuffix(r.Path, ld.String()) {
			if r.Range != fmt.Sprintf("bytes=%d-", kept) || r.Status != http.StatusPartialContent || r.Bytes() != size-kept {
				t.Errorf("next job's request: range %q, status %d, %d bytes; want the rest from %d", r.Range, r.Status, r.Bytes(), kept)
			}
		}
	}
	if fileDigest(t, final) != ld.String() {
		t.Error("cached layer does not match its digest")
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("partial file left after the commit")
	}
}

func TestFetch_BadPartialOrIgnoredRangeRestartsCleanly(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	ref, layer := bigImage(t, reg)
	ld, _ := layer.Digest()
	size, _ := layer.Size()
	for _, c := range []struct {
		name       string
		stripRange bool
	}{{"PartialOfOtherBytes", false}, {"RegistryIgnoresRange", true}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			rec := &registrytest.Recorder{}
			rec.StripRange.Store(c.stripRange)
			src := newSource(t, dir, rec)
			partial := filepath.Join(dir, "partial", strings.TrimPrefix(ld.String(), "sha256:"))
			if err := os.WriteFile(partial, bytes.Repeat([]byte{0x42}, 500_000), 0o600); err != nil {
				t.Fatal(err)
			}
			rel, err := src.Resolve(t.Context(), ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := src.Fetch(t.Context(), rel, amd64); err != nil {
				t.Fatal(err)
			}
			if fileDigest(t, rel.Images[0].Layers[0].Path) != ld.String() {
				t.Fatal("cached layer does not match its digest")
			}
			var total int64
			for _, r := range rec.Requests() {
				if r.Blob() && strings.HasSuffix(r.Path, ld.String()) {
					total += r.Bytes()
				}
			}
			t.Logf("transferred %d bytes for a %d-byte blob", total, size)
			// Ignored range: the answer from byte 0 replaces the partial.
			// Bad partial: the rest is fetched, fails the digest, and the
			// blob is fetched once more from its start.
			if limit := map[bool]int64{true: size, false: 2 * size}[c.stripRange]; total > limit {
				t.Errorf("transferred %d bytes, want at most %d", total, limit)
			}
		})
	}
}

func writeDockerConfig(t *testing.T, config string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

// writeHelper installs docker-credential-NAME on PATH, answering get for
// server with user and secret.
func writeHelper(t *testing.T, helper, server, user, secret string) {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf(`#!/bin/sh
[ "$1" = get ] || exit 1
read s
if [ "$s" = %q ]; then
  printf '{"ServerURL":"%%s","Username":%q,"Secret":%q}' "$s"
else
  echo "credentials not found in native keychain"; exit 1
fi
`, server, user, secret)
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+helper), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestResolve_PrivateRegistryCredentials(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{User: "ci", Password: "s3cret-pw"})
	f := pushMixed(t, reg, "private/app:v1")
	basic := func(user, pw string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)) }
	for _, c := range []struct {
		name    string
		setup   func(t *testing.T)
		wantErr error
		wantMsg string
	}{
		{"DockerConfigAuths", func(t *testing.T) {
			writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, basic("ci", "s3cret-pw")))
		}, nil, ""},
		{"CredHelpers", func(t *testing.T) {
			writeHelper(t, "lctest", reg.Addr, "ci", "s3cret-pw")
			writeDockerConfig(t, fmt.Sprintf(`{"credHelpers":{%q:"lctest"}}`, reg.Addr))
		}, nil, ""},
		{"CredsStore", func(t *testing.T) {
			writeHelper(t, "lcstore", reg.Addr, "ci", "s3cret-pw")
			writeDockerConfig(t, `{"credsStore":"lcstore"}`)
		}, nil, ""},
		{"NoCredentials", func(t *testing.T) {
			writeDockerConfig(t, `{}`)
		}, registrysource.ErrDenied, "wants credentials"},
		{"WrongPassword", func(t *testing.T) {
			writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg.Addr, basic("ci", "wrong-pw")))
		}, registrysource.ErrDenied, "refused the bastion's credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.setup(t)
			src := newSource(t, t.TempDir(), &registrytest.Recorder{})
			rel, err := src.Resolve(t.Context(), f.ref)
			if err == nil {
				err = src.Fetch(t.Context(), rel, amd64, arm64)
			}
			if c.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			t.Logf("error line: %v", err)
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.wantMsg) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line wrapping %v saying %q", err, c.wantErr, c.wantMsg)
			}
			for _, secret := range []string{"s3cret-pw", "wrong-pw", basic("ci", "wrong-pw")} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a credential")
				}
			}
		})
	}
}

func TestResolve_BadInputIsOneClearLine(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	f := pushMixed(t, reg, "team/app:v2")
	tarball := registrytest.LayerTar(20, 10_000)
	zstdRef := reg.Push(t, "team/zstd:1", registrytest.Image(t, "linux/amd64", true, registrytest.RawLayer([]byte("(zstd bytes)"), types.OCILayerZStd)))
	foreignRef := reg.Push(t, "team/foreign:1", registrytest.Image(t, "linux/amd64", true,
		registrytest.RawLayer(tarball, types.OCIUncompressedRestrictedLayer)))
	encRef := reg.Push(t, "team/enc:1", registrytest.Image(t, "linux/amd64", true,
		registrytest.RawLayer(tarball, "application/vnd.oci.image.layer.v1.tar+gzip+encrypted")))
	src := newSource(t, t.TempDir(), &registrytest.Recorder{})
	ctx := t.Context()

	noPlatform := func() error {
		rel, err := src.Resolve(ctx, f.ref)
		if err != nil {
			return err
		}
		return src.Fetch(ctx, rel, imagecache.HostPlatform("linux", "s390x"), imagecache.HostPlatform("linux", "ppc64le"))
	}
	resolve := func(ref string) func() error {
		return func() error { _, err := src.Resolve(ctx, ref); return err }
	}
	for _, c := range []struct {
		name string
		run  func() error
		want error
		says string
	}{
		{"UnknownRepository", resolve(reg.Ref("team/nope:v2")), imagecache.ErrNoImage, "no repository team/nope"},
		{"UnknownTag", resolve(reg.Ref("team/app:v9")), imagecache.ErrNoImage, "has no tag v9 (it has v2)"},
		{"UnknownDigest", resolve(reg.Ref("team/app@sha256:" + strings.Repeat("0", 64))), imagecache.ErrNoImage, "has no manifest sha256:0000"},
		{"InvalidReference", resolve("Team/App:v2"), registrysource.ErrBadReference, "Team/App"},
		{"NoPlatformTheHostsHave", noPlatform, imagecache.ErrNoPlatform, "has no image for linux/s390x (it has linux/amd64, linux/arm64/v8)"},
		{"ZstdLayer", resolve(zstdRef), imagecache.ErrUnsupported, "zstd"},
		{"ForeignLayer", resolve(foreignRef), imagecache.ErrUnsupported, "non-distributable"},
		{"EncryptedLayer", resolve(encRef), imagecache.ErrUnsupported, "encrypted"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.run()
			t.Logf("error line: %v", err)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line wrapping %v saying %q", err, c.want, c.says)
			}
		})
	}
}

func TestResolve_IndexWithAnUnusablePlatformServesTheOthers(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	amd := registrytest.Image(t, "linux/amd64", true, registrytest.GzipLayer(t, registrytest.LayerTar(30, 5000), types.OCILayer))
	arm := registrytest.Image(t, "linux/arm64", true, registrytest.RawLayer([]byte("zstd"), types.OCILayerZStd))
	ref := reg.PushIndex(t, "team/half:1", registrytest.Index(t, amd, arm))
	src := newSource(t, t.TempDir(), &registrytest.Recorder{})
	rel, err := src.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Fetch(t.Context(), rel, amd64, arm64); err != nil {
		t.Fatal(err)
	}
	if _, err := rel.Select(amd64); err != nil {
		t.Errorf("amd64 host: %v", err)
	}
	_, err = rel.Select(arm64)
	t.Logf("arm64 host's reason: %v", err)
	if !errors.Is(err, imagecache.ErrUnsupported) || !strings.Contains(err.Error(), "zstd") {
		t.Errorf("arm64 host: %v, want the zstd layer named", err)
	}
}

// A host that got the image's layers from a daemon-source job (uncompressed
// files) skips them in a registry-source job of the same image: the image
// ID and the chain IDs are the same, only the files that travel differ. An
// uncompressed registry layer is even the same cached file.
func TestRelease_SameImageFromDaemonAndRegistryDedupsByChainID(t *testing.T) {
	noDockerConfig(t)
	reg := registrytest.Start(t, registrytest.Options{})
	base, top := registrytest.LayerTar(40, 200_000), registrytest.LayerTar(41, 50_000)
	img := registrytest.Image(t, "linux/amd64", true,
		registrytest.GzipLayer(t, base, types.OCILayer), registrytest.RawLayer(top, types.OCIUncompressedLayer))
	ref := reg.Push(t, "team/same:1", img)
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cache, err := imagecache.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	fromDaemon, err := cache.Prepare(t.Context(), imagecache.NewFakeDockerConfig("team/same:1", config, [][]byte{base, top}), "team/same:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	src := registrysource.New(cache, registrysource.Options{Transport: &registrytest.Recorder{}})
	rel, err := src.Resolve(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	rec := &registrytest.Recorder{}
	src = registrysource.New(cache, registrysource.Options{Transport: rec})
	if err := src.Fetch(t.Context(), rel, amd64); err != nil {
		t.Fatal(err)
	}
	fromRegistry, err := rel.Select(amd64)
	if err != nil {
		t.Fatal(err)
	}
	if fromDaemon.ID != fromRegistry.ID || fromDaemon.Platform != fromRegistry.Platform {
		t.Fatalf("daemon source %s %s, registry source %s %s", fromDaemon.ID, fromDaemon.Platform, fromRegistry.ID, fromRegistry.Platform)
	}
	for i := range fromDaemon.Layers {
		d, r := fromDaemon.Layers[i], fromRegistry.Layers[i]
		if d.ChainID != r.ChainID || d.DiffID != r.DiffID || d.UnpackedSize != r.UnpackedSize {
			t.Errorf("layer %d: daemon %+v, registry %+v", i, d, r)
		}
	}
	if fromRegistry.Layers[0].Digest == fromDaemon.Layers[0].Digest || fromRegistry.Layers[0].MediaType != imagecache.MediaTarGzip {
		t.Errorf("gzipped registry layer travels as %s %s", fromRegistry.Layers[0].Digest, fromRegistry.Layers[0].MediaType)
	}
	if fromRegistry.Layers[1].Path != fromDaemon.Layers[1].Path || fromRegistry.Layers[1].MediaType != imagecache.MediaTar {
		t.Errorf("uncompressed registry layer %s is not the daemon's cached file %s", fromRegistry.Layers[1].Path, fromDaemon.Layers[1].Path)
	}
	if gets := blobGets(rec); len(gets) != 1 {
		t.Errorf("fetched %v, want only the gzipped layer: the uncompressed one was in the cache", gets)
	}
}

func TestResolve_UnreachableRegistryIsOneLineAndNotTheOperatorsInput(t *testing.T) {
	noDockerConfig(t)
	src := newSource(t, t.TempDir(), &registrytest.Recorder{})
	_, err := src.Resolve(t.Context(), "127.0.0.1:1/team/app:v1")
	t.Logf("error line: %v", err)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "reach registry 127.0.0.1:1") {
		t.Fatalf("got %v, want one line saying the registry was not reached", err)
	}
	for _, sentinel := range []error{imagecache.ErrNoImage, registrysource.ErrDenied, imagecache.ErrUnsupported, registrysource.ErrBadReference} {
		if errors.Is(err, sentinel) {
			t.Errorf("an unreachable registry wraps %v", sentinel)
		}
	}
}

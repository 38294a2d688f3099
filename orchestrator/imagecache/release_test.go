package imagecache

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustPlatform(t *testing.T, s string) Platform {
	t.Helper()
	p, err := ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlatform_ParseAndString(t *testing.T) {
	for _, s := range []string{"linux/amd64", "linux/arm/v7", "windows/amd64"} {
		if got := mustPlatform(t, s).String(); got != s {
			t.Errorf("%s round-trips to %s", s, got)
		}
	}
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "a/b/c/d"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("ParsePlatform(%q) succeeded", bad)
		}
	}
}

func TestHostPlatform_MapsUnameMachines(t *testing.T) {
	for machine, want := range map[string]string{
		"x86_64": "linux/amd64", "aarch64": "linux/arm64", "armv7l": "linux/arm/v7",
		"armv6l": "linux/arm/v6", "ppc64le": "linux/ppc64le",
	} {
		if got := HostPlatform("Linux", machine).String(); got != want {
			t.Errorf("HostPlatform(Linux, %s) = %s, want %s", machine, got, want)
		}
	}
}

func TestPlatform_RunsOnNormalisesVariants(t *testing.T) {
	for _, c := range []struct {
		image, host string
		want        bool
	}{
		{"linux/amd64", "linux/amd64", true},
		{"linux/arm64", "linux/arm64/v8", true},
		{"linux/arm64/v8", "linux/arm64", true},
		{"linux/arm/v6", "linux/arm/v7", true},
		{"linux/arm/v7", "linux/arm/v6", false},
		{"linux/arm64", "linux/amd64", false},
		{"windows/amd64", "linux/amd64", false},
	} {
		if got := mustPlatform(t, c.image).RunsOn(mustPlatform(t, c.host)); got != c.want {
			t.Errorf("%s RunsOn %s = %v, want %v", c.image, c.host, got, c.want)
		}
	}
}

func twoPlatformRelease(t *testing.T) *Release {
	shared := Layer{Digest: "sha256:" + strings.Repeat("a", 64), Size: 10}
	amd := &Image{ID: "amd", Platform: mustPlatform(t, "linux/amd64"), Layers: []Layer{shared, {Digest: "sha256:" + strings.Repeat("b", 64), Size: 5}}}
	arm := &Image{ID: "arm", Platform: mustPlatform(t, "linux/arm64/v8"), Layers: []Layer{shared, {Digest: "sha256:" + strings.Repeat("c", 64), Size: 7}}}
	return &Release{
		Ref: "reg/app:v2", Images: []*Image{amd, arm},
		Unusable: []Unusable{{Platform: mustPlatform(t, "linux/s390x"), Err: errors.Join(ErrUnsupported, errors.New("zstd layer"))}},
	}
}

func TestRelease_SelectsPerHostAndNamesWhatIsMissing(t *testing.T) {
	r := twoPlatformRelease(t)
	if im, err := r.Select(HostPlatform("linux", "aarch64")); err != nil || im.ID != "arm" {
		t.Fatalf("aarch64 host got %v, %v; want the arm64 image", im, err)
	}
	if im, err := r.Select(HostPlatform("linux", "x86_64")); err != nil || im.ID != "amd" {
		t.Fatalf("x86_64 host got %v, %v; want the amd64 image", im, err)
	}
	_, err := r.Select(HostPlatform("linux", "ppc64le"))
	if !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("ppc64le host: %v, want ErrNoPlatform", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "linux/ppc64le") || !strings.Contains(msg, "linux/amd64, linux/arm64/v8") || strings.Contains(msg, "\n") {
		t.Errorf("reason %q should be one line naming the host's and the image's platforms", msg)
	}
	if _, err := r.Select(HostPlatform("linux", "s390x")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("s390x host: %v, want the unusable platform's reason", err)
	}
}

func TestRelease_SelectAllFailsOnlyWhenNoHostHasAnImage(t *testing.T) {
	r := twoPlatformRelease(t)
	ims, err := r.SelectAll([]Platform{HostPlatform("linux", "x86_64"), HostPlatform("linux", "ppc64le"), HostPlatform("linux", "aarch64"), HostPlatform("linux", "x86_64")})
	if err != nil || len(ims) != 2 {
		t.Fatalf("SelectAll = %d images, %v; want amd64 and arm64", len(ims), err)
	}
	if _, err := r.SelectAll([]Platform{HostPlatform("linux", "ppc64le")}); !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("SelectAll(ppc64le) = %v, want ErrNoPlatform", err)
	}
	ls := Layers(ims)
	if len(ls) != 3 {
		t.Fatalf("Layers = %d files, want 3: the shared layer once", len(ls))
	}
}

func TestPartial_CommitsOnlyAVerifiedBlob(t *testing.T) {
	c, _ := New(t.TempDir())
	ctx := context.Background()
	data := bytes.Repeat([]byte("layer"), 1000)
	d := digestOf(data)
	p, err := c.OpenPartial(ctx, d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	p.Write(data[:1234])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if c.HasBlob(d, int64(len(data))) || fileExists(c.BlobPath(d)) {
		t.Fatal("half a blob under its final name")
	}
	// A later run continues where this one stopped.
	p, err = c.OpenPartial(ctx, d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if p.Offset() != 1234 {
		t.Fatalf("resumed at %d, want 1234", p.Offset())
	}
	p.Write(data[1234:])
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if got, err := os.ReadFile(c.BlobPath(d)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("committed blob differs (%v)", err)
	}
	if _, err := c.OpenPartial(ctx, d, int64(len(data))); !errors.Is(err, ErrHaveBlob) {
		t.Fatalf("OpenPartial of a cached blob = %v, want ErrHaveBlob", err)
	}
}

func TestPartial_WrongBytesAreRefusedAndEmptied(t *testing.T) {
	c, _ := New(t.TempDir())
	data := []byte("the real blob")
	d := digestOf(data)
	p, err := c.OpenPartial(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Write([]byte("the fake blob")); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Commit = %v, want ErrDigestMismatch", err)
	}
	if p.Offset() != 0 || fileExists(c.BlobPath(d)) {
		t.Fatalf("after a mismatch: offset %d, blob present %v", p.Offset(), fileExists(c.BlobPath(d)))
	}
	if _, err := p.Write(append(data, 'x')); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("writing past the size = %v, want ErrDigestMismatch", err)
	}
}

func TestPartial_SecondOpenerWaitsForTheLock(t *testing.T) {
	c, _ := New(t.TempDir())
	data := []byte("shared by two jobs")
	d := digestOf(data)
	p, err := c.OpenPartial(context.Background(), d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.OpenPartial(ctx, d, int64(len(data))); err == nil {
		t.Fatal("second opener got the lock while the first held it")
	}
	got := make(chan error, 1)
	go func() {
		_, err := c.OpenPartial(context.Background(), d, int64(len(data)))
		got <- err
	}()
	p.Write(data)
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := <-got; !errors.Is(err, ErrHaveBlob) {
		t.Fatalf("waiting opener got %v after the commit, want ErrHaveBlob", err)
	}
}

func TestVerifyLayer_ChecksDiffIDOnceAndGivesUnpackedSize(t *testing.T) {
	c, _ := New(t.TempDir())
	ctx := context.Background()
	tarball := bytes.Repeat([]byte("0123456789"), 10000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tarball)
	zw.Close()
	d := digestOf(gz.Bytes())
	if err := c.StoreBlob(d, gz.Bytes()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.VerifyLayer(ctx, d, MediaTarGzip, digestOf([]byte("other"))); err == nil {
		t.Fatal("a layer with another diff ID verified")
	}
	n, err := c.VerifyLayer(ctx, d, MediaTarGzip, digestOf(tarball))
	if err != nil || n != int64(len(tarball)) {
		t.Fatalf("VerifyLayer = %d, %v; want %d", n, err, len(tarball))
	}
	// Recorded: the blob is not read again.
	if err := os.Remove(c.BlobPath(d)); err != nil {
		t.Fatal(err)
	}
	if n, err := c.VerifyLayer(ctx, d, MediaTarGzip, digestOf(tarball)); err != nil || n != int64(len(tarball)) {
		t.Fatalf("second VerifyLayer = %d, %v", n, err)
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "layers", strings.TrimPrefix(d, "sha256:")+".json")); err != nil {
		t.Fatal(err)
	}
}

func TestStoreBlob_RefusesBytesOfAnotherDigest(t *testing.T) {
	c, _ := New(t.TempDir())
	if err := c.StoreBlob(digestOf([]byte("a")), []byte("b")); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("StoreBlob = %v, want ErrDigestMismatch", err)
	}
	if err := c.StoreBlob("sha512:abc", []byte("b")); err == nil {
		t.Fatal("a sha512 digest was accepted")
	}
}

func TestPrepare_GivesTheDaemonImagesPlatformAndOneRelease(t *testing.T) {
	d := NewFakeDocker("lab/app:v1", []byte("one"), []byte("two"))
	c, _ := New(t.TempDir())
	im, err := c.Prepare(context.Background(), d, "lab/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if im.Platform.String() != "linux/amd64" {
		t.Fatalf("platform %s, want linux/amd64 from the config", im.Platform)
	}
	if im.Layers[0].UnpackedSize != 3 || im.UnpackedSize() != 6 {
		t.Fatalf("unpacked sizes %d, %d", im.Layers[0].UnpackedSize, im.UnpackedSize())
	}
	rel := im.Release()
	if got, err := rel.Select(HostPlatform("linux", "x86_64")); err != nil || got != im {
		t.Fatalf("Select = %v, %v", got, err)
	}
	if _, err := rel.Select(HostPlatform("linux", "aarch64")); !errors.Is(err, ErrNoPlatform) {
		t.Fatalf("an arm64 host got %v from an amd64 daemon image, want ErrNoPlatform", err)
	}
}

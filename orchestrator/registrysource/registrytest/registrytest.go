// Package registrytest runs a real registry for tests, Debian's
// docker-registry (distribution 2.8) on 127.0.0.1 with its storage in a temp
// dir, optionally behind htpasswd basic auth, stopped by pid when the test
// ends; and builds test images to push to it with go-containerregistry.
package registrytest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"
)

// Binary is where Debian's docker-registry package installs the registry.
const Binary = "/usr/bin/docker-registry"

// Options choose how the registry is started.
type Options struct {
	// User and Password, when set, put the registry behind htpasswd basic
	// auth with this one account.
	User, Password string
}

// Registry is a running registry.
type Registry struct {
	Addr string // 127.0.0.1:port
	Dir  string
	opts Options
}

// Start runs a registry for t, or skips t when docker-registry is missing.
func Start(t testing.TB, opts Options) *Registry {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		t.Skipf("no %s (Debian package docker-registry)", Binary)
	}
	dir := t.TempDir()
	r := &Registry{Dir: dir, opts: opts}
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if lastErr = r.start(t); lastErr == nil {
			return r
		}
	}
	t.Fatalf("start registry: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (r *Registry) start(t testing.TB) error {
	config := fmt.Sprintf("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
		filepath.Join(r.Dir, "data"), r.Addr)
	if r.opts.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(r.opts.Password), bcrypt.MinCost)
		if err != nil {
			return err
		}
		htpasswd := filepath.Join(r.Dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.opts.User+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
		config += fmt.Sprintf("auth:\n  htpasswd:\n    realm: layercast-test\n    path: %s\n", htpasswd)
	}
	cfgPath := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return err
	}
	logPath := filepath.Join(r.Dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(Binary, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			c.Close()
			t.Cleanup(stop)
			return nil
		}
		select {
		case werr := <-exited:
			logf.Close()
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("registry exited (%v): %s", werr, tail(b, 1500))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("registry not listening on %s after 30s", r.Addr)
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// Log returns what the registry logged so far.
func (r *Registry) Log() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	return string(b)
}

// Ref is addr/repo:tag on this registry.
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

func (r *Registry) pushOpts(t testing.TB) []remote.Option {
	// Non-distributable layers too: the registry holds every blob, so
	// that refusing them is the reader's doing.
	opts := []remote.Option{remote.WithContext(t.Context()), remote.WithNondistributable}
	if r.opts.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.opts.User, Password: r.opts.Password}))
	}
	return opts
}

// Push writes img to repoTag ("team/app:v1") and returns its full reference.
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, r.pushOpts(t)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref.String()
}

// PushIndex writes idx and its images to repoTag and returns its reference.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(r.Ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, r.pushOpts(t)...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return ref.String()
}

// LayerTar returns a layer tar holding one file of size random
// (incompressible) bytes chosen by seed.
func LayerTar(seed uint64, size int) []byte {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)}).Read(data)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("file%d", seed), Size: int64(size), Mode: 0o644})
	tw.Write(data)
	tw.Close()
	return buf.Bytes()
}

// GzipLayer is the layer tar gzipped as a registry holds it, with the
// Docker v2 media type (types.DockerLayer) unless mt says otherwise.
func GzipLayer(t testing.TB, tarball []byte, mt ...types.MediaType) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(tarball)
	zw.Close()
	l := &gzLayer{gz: buf.Bytes(), tar: tarball, mt: types.DockerLayer}
	if len(mt) > 0 {
		l.mt = mt[0]
	}
	return l
}

// RawLayer is a layer whose blob is b as it is, with media type mt: an
// uncompressed tar (types.OCIUncompressedLayer) or a blob of a media
// type to refuse.
func RawLayer(b []byte, mt types.MediaType) v1.Layer { return static.NewLayer(b, mt) }

type gzLayer struct {
	gz, tar []byte
	mt      types.MediaType
}

func (l *gzLayer) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.gz))
	return h, err
}
func (l *gzLayer) DiffID() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(l.tar))
	return h, err
}
func (l *gzLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *gzLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}
func (l *gzLayer) Size() (int64, error)                { return int64(len(l.gz)), nil }
func (l *gzLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// Image is an image for platform ("linux/arm64") made of layers, with a
// config like docker build writes. oci selects OCI media types for the
// manifest and config instead of Docker v2's.
func Image(t testing.TB, platform string, oci bool, layers ...v1.Layer) v1.Image {
	t.Helper()
	var img v1.Image = empty.Image
	if oci {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	var adds []mutate.Addendum
	for i, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: fmt.Sprintf("ADD layer%d /", i)}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index is an OCI index of imgs, each entry's platform taken from its config.
func Index(t testing.TB, imgs ...v1.Image) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		mt, err := img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: mt,
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		}})
	}
	return idx
}

// ConfigDigest is the image ID of img.
func ConfigDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// Package registrysource fills the bastion's image cache (package
// imagecache) from a registry, with no Docker daemon: Resolve reads the
// manifest or index a reference names, and the manifest and config of every
// platform; Fetch downloads the layer blobs of the platforms a fleet needs,
// as the registry holds them (compressed, never recompressed), verified by
// digest and by diff ID, resumable, once per digest across platforms and
// jobs.
//
// Credentials come from a keychain (by default the bastion's Docker config:
// auths, credsStore, credHelpers) and stay in this process: they are never
// logged, written or passed to a host.
//
// Errors the operator must fix wrap one of: imagecache.ErrNoImage (no such
// repository, tag or digest), ErrDenied, ErrBadReference,
// imagecache.ErrUnsupported, imagecache.ErrNoPlatform, imagecache.ErrNoLayers.
package registrysource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/imagecache"
)

// ErrDenied means the registry refused the bastion: no credentials where it
// needs some, or credentials it does not accept for the repository.
var ErrDenied = errors.New("registry denied access")

// ErrBadReference means the image reference cannot be parsed.
var ErrBadReference = errors.New("invalid image reference")

// maxConfigSize bounds an image config or manifest read into memory.
const maxConfigSize = 16 << 20

// Options tune a Source; the zero value is ready to use.
type Options struct {
	// Keychain finds the registry's credentials. Nil means
	// authn.DefaultKeychain: DOCKER_CONFIG (or ~/.docker)/config.json with
	// its auths, credsStore and credHelpers.
	Keychain authn.Keychain
	// Transport carries the HTTP requests. Nil means remote.DefaultTransport.
	Transport http.RoundTripper
	// Insecure allows plain HTTP to any registry. Without it plain HTTP is
	// used only for localhost, loopback and private (RFC 1918) addresses.
	Insecure bool
	// Parallel is how many blobs download at once; zero means 3.
	Parallel int
	// Status receives short human-readable lines about slow work.
	Status func(string)
	Log    *slog.Logger
}

// Source reads images from registries into a cache.
type Source struct {
	cache *imagecache.Cache
	opts  Options
}

// New returns a Source writing into cache.
func New(cache *imagecache.Cache, opts Options) *Source {
	if opts.Keychain == nil {
		opts.Keychain = authn.DefaultKeychain
	}
	if opts.Transport == nil {
		opts.Transport = remote.DefaultTransport
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 3
	}
	if opts.Status == nil {
		opts.Status = func(string) {}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Source{cache: cache, opts: opts}
}

// session is one authenticated conversation with a repository.
type session struct {
	s      *Source
	ref    string
	repo   name.Repository
	client *http.Client
	rt     http.RoundTripper
	anon   bool
}

func (s *Source) parse(ref string) (name.Reference, error) {
	var opts []name.Option
	if s.opts.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadReference, ref, err)
	}
	return r, nil
}

// open resolves the credentials for repo and does the registry's auth
// handshake for pulling from it.
func (s *Source) open(ctx context.Context, ref string, repo name.Repository) (*session, error) {
	auth, err := authn.Resolve(ctx, s.opts.Keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("find credentials for %s: %w", repo.RegistryStr(), err)
	}
	ss := &session{s: s, ref: ref, repo: repo, anon: auth == authn.Anonymous}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, s.opts.Transport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, ss.classify(fmt.Sprintf("reach registry %s", repo.RegistryStr()), err)
	}
	ss.rt = rt
	ss.client = &http.Client{Transport: rt}
	return ss, nil
}

// Resolve reads what ref names: a manifest, or an index and the manifest of
// each of its platforms, and their configs, into the cache; layer blobs are
// left for Fetch. The Release has one Image per usable platform, its layers'
// Path where Fetch puts them; platforms that cannot be distributed are in
// Unusable with their reason. It fails when no platform is usable.
func (s *Source) Resolve(ctx context.Context, ref string) (*imagecache.Release, error) {
	r, err := s.parse(ref)
	if err != nil {
		return nil, err
	}
	ss, err := s.open(ctx, ref, r.Context())
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(r, remote.WithContext(ctx), remote.WithTransport(ss.rt))
	if err != nil {
		return nil, ss.missing(ctx, r, ss.classify("read manifest", err))
	}
	if err := s.cache.StoreBlob(desc.Digest.String(), desc.Manifest); err != nil {
		return nil, err
	}
	rel := &imagecache.Release{Ref: ref, Digest: desc.Digest.String()}
	switch mt := desc.MediaType; {
	case mt.IsIndex():
		if err := ss.resolveIndex(ctx, rel, desc.Manifest); err != nil {
			return nil, err
		}
	case mt.IsImage():
		im, err := ss.image(ctx, desc.Digest.String(), desc.Manifest, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		rel.Images = []*imagecache.Image{im}
	case mt.IsSchema1():
		return nil, fmt.Errorf("%w: %s has a schema 1 manifest (%s), which is deprecated: push it again with a current client", imagecache.ErrUnsupported, ref, mt)
	default:
		return nil, fmt.Errorf("%w: %s is %s, not a container image", imagecache.ErrUnsupported, ref, mt)
	}
	return rel, nil
}

// missing tells, when err says the registry lacks the manifest, whether
// the repository or only the tag is missing: distribution answers
// MANIFEST_UNKNOWN for both, and NAME_UNKNOWN for the tag list of a
// repository it does not have.
func (ss *session) missing(ctx context.Context, r name.Reference, err error) error {
	if !errors.Is(err, imagecache.ErrNoImage) {
		return err
	}
	tags, lerr := remote.List(ss.repo, remote.WithContext(ctx), remote.WithTransport(ss.rt))
	if lerr != nil {
		if cerr := ss.classify("list tags", lerr); errors.Is(cerr, imagecache.ErrNoImage) {
			return cerr
		}
		return err
	}
	if len(tags) == 0 {
		return fmt.Errorf("%w: %s: repository %s at %s has no tags", imagecache.ErrNoImage, ss.ref, ss.repo.RepositoryStr(), ss.repo.RegistryStr())
	}
	if t, ok := r.(name.Tag); ok {
		some := tags
		if len(some) > 5 {
			some = append(some[:5:5], "...")
		}
		return fmt.Errorf("%w: %s: repository %s at %s has no tag %s (it has %s)", imagecache.ErrNoImage, ss.ref,
			ss.repo.RepositoryStr(), ss.repo.RegistryStr(), t.TagStr(), strings.Join(some, ", "))
	}
	if d, ok := r.(name.Digest); ok {
		return fmt.Errorf("%w: %s: repository %s at %s has no manifest %s", imagecache.ErrNoImage, ss.ref,
			ss.repo.RepositoryStr(), ss.repo.RegistryStr(), d.DigestStr())
	}
	return err
}

// attestation is the annotation buildx puts on the manifests of an index
// that hold provenance and SBOMs rather than an image.
const attestation = "vnd.docker.reference.type"

func (ss *session) resolveIndex(ctx context.Context, rel *imagecache.Release, raw []byte) error {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("%w: %s: parse index: %w", imagecache.ErrUnsupported, ss.ref, err)
	}
	for _, m := range idx.Manifests {
		if m.Annotations[attestation] != "" || m.Platform != nil && m.Platform.OS == "unknown" {
			continue
		}
		var p *imagecache.Platform
		if m.Platform != nil {
			p = &imagecache.Platform{OS: m.Platform.OS, Architecture: m.Platform.Architecture, Variant: m.Platform.Variant}
		}
		if !m.MediaType.IsImage() {
			if p != nil {
				rel.Unusable = append(rel.Unusable, imagecache.Unusable{Platform: *p,
					Err: fmt.Errorf("%w: the index's entry for %s is %s, not an image manifest", imagecache.ErrUnsupported, p, m.MediaType)})
			}
			ss.s.opts.Log.Debug("index entry skipped", "ref", ss.ref, "digest", m.Digest, "media_type", m.MediaType)
			continue
		}
		mraw, err := ss.manifest(ctx, m.Digest.String())
		if err != nil {
			return err
		}
		im, err := ss.image(ctx, m.Digest.String(), mraw, p)
		if (errors.Is(err, imagecache.ErrUnsupported) || errors.Is(err, imagecache.ErrNoLayers)) && p != nil {
			rel.Unusable = append(rel.Unusable, imagecache.Unusable{Platform: *p, Err: err})
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", ss.ref, err)
		}
		rel.Images = append(rel.Images, im)
	}
	if len(rel.Images) == 0 {
		if len(rel.Unusable) > 0 {
			u := rel.Unusable[0]
			return fmt.Errorf("%s: no platform can be distributed; %s: %w", ss.ref, u.Platform, u.Err)
		}
		return fmt.Errorf("%w: %s: the index lists no image", imagecache.ErrUnsupported, ss.ref)
	}
	return nil
}

// manifest returns a manifest by digest, from the cache when it has it.
func (ss *session) manifest(ctx context.Context, digest string) ([]byte, error) {
	if b, err := ss.s.cache.ReadBlob(digest); err == nil {
		return b, nil
	}
	desc, err := remote.Get(ss.repo.Digest(digest), remote.WithContext(ctx), remote.WithTransport(ss.rt))
	if err != nil {
		return nil, ss.classify("read manifest "+digest, err)
	}
	if err := ss.s.cache.StoreBlob(digest, desc.Manifest); err != nil {
		return nil, err
	}
	return desc.Manifest, nil
}

// imageConfig is the part of an image config the cache needs.
type imageConfig struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
	RootFS       struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// image describes one platform's image from its manifest, fetching the
// config. p is the platform the index gave, if any.
func (ss *session) image(ctx context.Context, digest string, raw []byte, p *imagecache.Platform) (*imagecache.Image, error) {
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: parse manifest %s: %w", imagecache.ErrUnsupported, digest, err)
	}
	switch m.Config.MediaType {
	case types.DockerConfigJSON, types.OCIConfigJSON:
	default:
		return nil, fmt.Errorf("%w: config media type %s: not a container image", imagecache.ErrUnsupported, m.Config.MediaType)
	}
	cfgDigest := m.Config.Digest.String()
	if m.Config.Size > maxConfigSize {
		return nil, fmt.Errorf("%w: config of %d bytes", imagecache.ErrUnsupported, m.Config.Size)
	}
	if err := ss.fetchBlob(ctx, cfgDigest, m.Config.Size); err != nil {
		return nil, fmt.Errorf("fetch image config: %w", err)
	}
	cfgRaw, err := ss.s.cache.ReadBlob(cfgDigest)
	if err != nil {
		return nil, fmt.Errorf("read image config: %w", err)
	}
	var cfg imageConfig
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("%w: parse image config %s: %w", imagecache.ErrUnsupported, cfgDigest, err)
	}
	im := &imagecache.Image{
		Ref: ss.ref, ID: cfgDigest, ConfigPath: ss.s.cache.BlobPath(cfgDigest), ManifestDigest: digest,
		Platform: imagecache.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
	}
	if p != nil {
		im.Platform = *p
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("%w: %s", imagecache.ErrNoLayers, im.Platform)
	}
	if cfg.RootFS.Type != "layers" || len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%w: %s: manifest lists %d layers, config %d diff IDs (rootfs type %q)",
			imagecache.ErrUnsupported, im.Platform, len(m.Layers), len(cfg.RootFS.DiffIDs), cfg.RootFS.Type)
	}
	chain := ""
	for i, l := range m.Layers {
		mt, err := layerMediaType(l.MediaType)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: layer %d of %d: %w", imagecache.ErrUnsupported, im.Platform, i+1, len(m.Layers), err)
		}
		if l.Size <= 0 {
			return nil, fmt.Errorf("%w: %s: layer %d has size %d", imagecache.ErrUnsupported, im.Platform, i+1, l.Size)
		}
		diffID := cfg.RootFS.DiffIDs[i]
		chain = jobspec.ChainID(chain, diffID)
		im.Layers = append(im.Layers, imagecache.Layer{
			DiffID: diffID, ChainID: chain, Digest: l.Digest.String(), Size: l.Size,
			MediaType: mt, Path: ss.s.cache.BlobPath(l.Digest.String()),
		})
	}
	return im, nil
}

// layerMediaType maps a registry's layer media type to the file media types
// the hosts' daemons load (Debian's docker.io 20.10: tar and gzipped tar;
// a zstd layer file fails its load with "invalid tar header").
func layerMediaType(mt types.MediaType) (string, error) {
	switch mt {
	case types.DockerLayer, types.OCILayer:
		return imagecache.MediaTarGzip, nil
	case types.DockerUncompressedLayer, types.OCIUncompressedLayer:
		return imagecache.MediaTar, nil
	case types.OCILayerZStd:
		return "", fmt.Errorf("zstd-compressed (%s), which the hosts' Docker 20.10 cannot load: push the image with gzip layers", mt)
	case types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return "", fmt.Errorf("non-distributable (foreign) layer (%s)", mt)
	}
	if bytes.Contains([]byte(mt), []byte("encrypted")) {
		return "", fmt.Errorf("encrypted layer (%s)", mt)
	}
	return "", fmt.Errorf("unknown layer media type %q", string(mt))
}

// Fetch downloads into the cache the layers of rel's images for these host
// platforms that the cache lacks, each digest once however many platforms
// share it, and verifies every layer once: blob digest and size, then the
// unpacked tar's diff ID against the config, filling UnpackedSize. Hosts
// whose platform rel lacks are left out (Select tells them why); it fails
// with ErrNoPlatform only when none of the platforms has an image.
func (s *Source) Fetch(ctx context.Context, rel *imagecache.Release, hosts ...imagecache.Platform) error {
	images, err := rel.SelectAll(hosts)
	if err != nil {
		return err
	}
	layers := imagecache.Layers(images)
	var missing []imagecache.Layer
	var bytes int64
	for _, l := range layers {
		if !s.cache.HasBlob(l.Digest, l.Size) {
			missing = append(missing, l)
			bytes += l.Size
		}
	}
	if len(missing) > 0 {
		r, err := s.parse(rel.Ref)
		if err != nil {
			return err
		}
		ss, err := s.open(ctx, rel.Ref, r.Context())
		if err != nil {
			return err
		}
		s.opts.Status(fmt.Sprintf("fetching %d layers (%d bytes) of %s from the registry", len(missing), bytes, rel.Ref))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.opts.Parallel)
		for _, l := range missing {
			g.Go(func() error {
				if err := ss.fetchBlob(gctx, l.Digest, l.Size); err != nil {
					return fmt.Errorf("fetch layer %s of %s: %w", l.Digest, rel.Ref, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for _, l := range layers {
		g.Go(func() error {
			_, err := s.cache.VerifyLayer(gctx, l.Digest, l.MediaType, l.DiffID)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("verify layers of %s: %w", rel.Ref, err)
	}
	for _, im := range images {
		for i, l := range im.Layers {
			n, err := s.cache.VerifyLayer(ctx, l.Digest, l.MediaType, l.DiffID)
			if err != nil {
				return fmt.Errorf("verify layers of %s for %s: %w", rel.Ref, im.Platform, err)
			}
			im.Layers[i].UnpackedSize = n
		}
	}
	return nil
}

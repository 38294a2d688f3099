package imagecache

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoPlatform means the image has no usable variant for a host's platform.
var ErrNoPlatform = errors.New("no image for the host's platform")

// ErrUnsupported means the image cannot be distributed: a layer media type
// the hosts' daemons do not load, a manifest or config that is not a
// container image's.
var ErrUnsupported = errors.New("unsupported image")

// Release is one image reference resolved for every platform it has: an
// index gives one Image per platform, a single manifest or a daemon's
// image gives one. Images of different platforms may share layers; Layers
// lists each file once.
type Release struct {
	Ref string
	// Digest is the digest of the manifest or index the reference named
	// when resolved from a registry; empty for a daemon's image.
	Digest string
	// Images are the usable images, in the index's order.
	Images []*Image
	// Unusable are the platforms the index lists but that cannot be
	// distributed, each with its reason (wrapping ErrUnsupported).
	Unusable []Unusable
}

// Unusable is a platform of an index that cannot be distributed.
type Unusable struct {
	Platform Platform
	Err      error
}

// Release returns the one-platform release of im.
func (im *Image) Release() *Release {
	return &Release{Ref: im.Ref, Images: []*Image{im}}
}

// Platforms lists the usable platforms.
func (r *Release) Platforms() []Platform {
	var ps []Platform
	for _, im := range r.Images {
		ps = append(ps, im.Platform)
	}
	return ps
}

// Select returns the image for a host of platform host. Its error, wrapping
// ErrNoPlatform or ErrUnsupported, is that host's reason to fail alone.
// An image whose platform is unknown (a daemon's image saved without one)
// is taken for any host.
func (r *Release) Select(host Platform) (*Image, error) {
	var runs, unknown *Image
	for _, im := range r.Images {
		switch {
		case im.Platform.normal() == host.normal():
			return im, nil
		case runs == nil && im.Platform.RunsOn(host):
			runs = im
		case unknown == nil && im.Platform == Platform{}:
			unknown = im
		}
	}
	if runs != nil {
		return runs, nil
	}
	if unknown != nil {
		return unknown, nil
	}
	for _, u := range r.Unusable {
		if u.Platform.RunsOn(host) {
			return nil, fmt.Errorf("%s for %s: %w", r.Ref, host, u.Err)
		}
	}
	return nil, fmt.Errorf("%w: %s has no image for %s (it has %s)", ErrNoPlatform, r.Ref, host, r.listPlatforms())
}

func (r *Release) listPlatforms() string {
	var s []string
	for _, im := range r.Images {
		s = append(s, im.Platform.String())
	}
	for _, u := range r.Unusable {
		s = append(s, u.Platform.String()+" (unusable)")
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// SelectAll returns the image of each host platform, one per distinct
// image, and an error (wrapping ErrNoPlatform or ErrUnsupported) only when
// none of the platforms has one: hosts whose platform lacks an image fail
// alone through Select.
func (r *Release) SelectAll(hosts []Platform) ([]*Image, error) {
	var out []*Image
	var errs []error
	seen := map[*Image]bool{}
	for _, p := range hosts {
		im, err := r.Select(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[im] {
			seen[im] = true
			out = append(out, im)
		}
	}
	if len(out) == 0 && len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

// Layers returns the layer files of images, each digest once, in order of
// first use: what to build torrents for and to seed.
func Layers(images []*Image) []Layer {
	var out []Layer
	seen := map[string]bool{}
	for _, im := range images {
		for _, l := range im.Layers {
			if !seen[l.Digest] {
				seen[l.Digest] = true
				out = append(out, l)
			}
		}
	}
	return out
}

package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"
)

// Image is a generated image made available in the lab.
type Image struct {
	ImageInfo
	Spec ImageSpec `json:"spec"`
	// Path is the docker-save archive in the lab directory.
	Path string `json:"path"`
	// RegistryRef is the image's name in the lab registry ("" without one).
	RegistryRef string `json:"registry_ref,omitempty"`
	// Base is the base-only image (see ImageSpec.BaseSpec), when the image
	// has a base.
	Base *ImageInfo `json:"base,omitempty"`
	// BasePath is the base-only image's archive.
	BasePath string `json:"base_path,omitempty"`
}

func (l *Lab) imagesDir() string { return filepath.Join(l.st.Dir, "images") }

func imageFileName(tag string) string {
	return strings.NewReplacer("/", "_", ":", "_").Replace(tag)
}

// MakeImage generates an image (see WriteImage), writes it to the lab
// directory, loads it into the bastion's daemon and, when the lab has a
// registry, pushes it there as RegistryAddr()/TAG. An image with a base
// also gets its base-only archive, for Preload.
func (l *Lab) MakeImage(ctx context.Context, spec ImageSpec) (*Image, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(l.imagesDir(), 0o755); err != nil {
		return nil, fmt.Errorf("create images dir: %w", err)
	}
	img := &Image{Spec: spec, Path: filepath.Join(l.imagesDir(), imageFileName(spec.Tag)+".tar")}
	if img.ImageInfo, err = writeImageFile(img.Path, spec); err != nil {
		return nil, err
	}
	if spec.BaseLayers > 0 {
		base, err := spec.BaseSpec()
		if err != nil {
			return nil, err
		}
		img.BasePath = filepath.Join(l.imagesDir(), imageFileName(spec.Tag)+".base.tar")
		info, err := writeImageFile(img.BasePath, base)
		if err != nil {
			return nil, err
		}
		img.Base = &info
	}
	if err := l.LoadImage(ctx, "bastion", img.Path); err != nil {
		return nil, err
	}
	if reg := l.RegistryAddr(); reg != "" {
		img.RegistryRef = reg + "/" + spec.Tag
		if _, err := l.Exec(ctx, "bastion", "docker", "tag", spec.Tag, img.RegistryRef); err != nil {
			return nil, fmt.Errorf("tag image for the registry: %w", err)
		}
		if err := l.push(ctx, img.RegistryRef); err != nil {
			return nil, fmt.Errorf("push image: %w", err)
		}
	}
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode image record: %w", err)
	}
	if err := os.WriteFile(strings.TrimSuffix(img.Path, ".tar")+".json", b, 0o644); err != nil {
		return nil, fmt.Errorf("write image record: %w", err)
	}
	return img, nil
}

func writeImageFile(path string, spec ImageSpec) (ImageInfo, error) {
	f, err := os.Create(path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("create image archive: %w", err)
	}
	info, err := WriteImage(f, spec)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return info, fmt.Errorf("write image %s: %w", spec.Tag, err)
	}
	return info, nil
}

// FindImage returns the record of an image MakeImage made in this lab.
func (l *Lab) FindImage(tag string) (*Image, error) {
	spec, err := ImageSpec{Tag: tag}.withDefaults()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(l.imagesDir(), imageFileName(spec.Tag)+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image %s was not made in lab %s: %w", spec.Tag, l.st.Name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read image record: %w", err)
	}
	var img Image
	if err := json.Unmarshal(b, &img); err != nil {
		return nil, fmt.Errorf("parse image record: %w", err)
	}
	return &img, nil
}

// ContainerdNamespace is where a containerd host's images go: the
// kubelet's namespace.
const ContainerdNamespace = "k8s.io"

// LoadImage loads a docker-save archive into a lab machine's daemon, reading
// the archive from outside the machine: docker load, or on a containerd
// host ctr images import into ContainerdNamespace, unpacked.
func (l *Lab) LoadImage(ctx context.Context, machine, archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	defer f.Close()
	m, err := l.machine(machine)
	if err != nil {
		return err
	}
	args := []string{"docker", "load", "--quiet"}
	if m.Role == RoleHost && m.runsContainerd() {
		args = []string{"ctr", "--namespace", ContainerdNamespace, "images", "import", "-"}
	}
	cmd, err := l.Command(ctx, machine, args...)
	if err != nil {
		return err
	}
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s into %s: %w: %s", strings.Join(args[:2], " "), machine, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Preload loads the base layers of an image MakeImage made (its base-only
// image) into the given hosts' daemons (docker or containerd), so those hosts already hold the
// layers the image shares with its base.
func (l *Lab) Preload(ctx context.Context, tag string, hosts ...string) error {
	img, err := l.FindImage(tag)
	if err != nil {
		return err
	}
	if img.BasePath == "" {
		return fmt.Errorf("%w: %s has no base to preload", ErrInvalidImageSpec, img.Tag)
	}
	var g errgroup.Group
	g.SetLimit(8)
	for _, h := range hosts {
		g.Go(func() error {
			if _, err := l.host(h); err != nil {
				return err
			}
			return l.LoadImage(ctx, h, img.BasePath)
		})
	}
	return g.Wait()
}

// push pushes ref from the bastion's daemon to the lab registry, logged in
// (password on stdin, in a Docker config of its own that is removed after)
// when the registry wants basic auth.
func (l *Lab) push(ctx context.Context, ref string) error {
	user, password := l.RegistryAuth()
	if user == "" {
		_, err := l.Exec(ctx, "bastion", "docker", "push", ref)
		return err
	}
	dir, err := os.MkdirTemp(l.st.Dir, "docker-config-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	login, err := l.Command(ctx, "bastion", "docker", "--config", dir, "login", "-u", user, "--password-stdin", l.RegistryAddr())
	if err != nil {
		return err
	}
	login.Stdin = strings.NewReader(password)
	if out, err := login.CombinedOutput(); err != nil {
		return fmt.Errorf("docker login: %w: %s", err, strings.TrimSpace(string(out)))
	}
	_, err = l.Exec(ctx, "bastion", "docker", "--config", dir, "push", ref)
	return err
}

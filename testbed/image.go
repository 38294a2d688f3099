package testbed

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"
)

// ErrInvalidImageSpec reports an ImageSpec that cannot be built.
var ErrInvalidImageSpec = errors.New("invalid image spec")

// HelloMessage is what the entrypoint of every generated image prints.
const HelloMessage = "hello from a layercast lab image\n"

// ImageSpec describes a generated test image.
type ImageSpec struct {
	// Tag names the image, e.g. "lab/app:v1".
	Tag string `json:"tag"`
	// Size is the total size of the files in all layers, in bytes.
	Size int64 `json:"size"`
	// Layers is the number of layers, base layers included. Default 1.
	Layers int `json:"layers"`
	// BaseSize bytes of Size form the first BaseLayers layers, whose
	// content depends only on BaseSize and BaseLayers: any two images with
	// the same base share those layers, as images built FROM one base do.
	BaseSize   int64 `json:"base_size,omitempty"`
	BaseLayers int   `json:"base_layers,omitempty"`
	// Seed picks the content of the layers above the base. Default Tag.
	Seed string `json:"seed,omitempty"`
}

// ImageInfo describes a generated image.
type ImageInfo struct {
	Tag     string   `json:"tag"`
	ID      string   `json:"id"` // sha256 of the config, as docker images --no-trunc shows
	DiffIDs []string `json:"diff_ids"`
	// Bytes is the size of the docker-save archive.
	Bytes int64 `json:"bytes"`
}

func (s ImageSpec) withDefaults() (ImageSpec, error) {
	if s.Tag == "" || strings.ContainsAny(s.Tag, " \t\n") {
		return s, fmt.Errorf("%w: tag %q", ErrInvalidImageSpec, s.Tag)
	}
	if !strings.Contains(s.Tag[strings.LastIndex(s.Tag, "/")+1:], ":") {
		s.Tag += ":latest"
	}
	if s.Layers == 0 {
		s.Layers = 1
	}
	if s.BaseSize > 0 && s.BaseLayers == 0 {
		s.BaseLayers = 1
	}
	if s.Seed == "" {
		s.Seed = s.Tag
	}
	switch {
	case s.Size < 0 || s.BaseSize < 0 || s.Layers < 1:
		return s, fmt.Errorf("%w: negative size or no layers", ErrInvalidImageSpec)
	case s.BaseSize > s.Size:
		return s, fmt.Errorf("%w: base %d bytes larger than image %d", ErrInvalidImageSpec, s.BaseSize, s.Size)
	case s.BaseLayers >= s.Layers && s.BaseSize < s.Size:
		return s, fmt.Errorf("%w: %d base layers leave no layer for the %d bytes above the base", ErrInvalidImageSpec, s.BaseLayers, s.Size-s.BaseSize)
	case s.BaseLayers > s.Layers:
		return s, fmt.Errorf("%w: %d base layers of %d", ErrInvalidImageSpec, s.BaseLayers, s.Layers)
	}
	return s, nil
}

// BaseSpec is the image made of s's base layers only, tagged REPO-base:TAG.
// Loading it into a daemon gives that daemon the layers s shares with every
// image on the same base.
func (s ImageSpec) BaseSpec() (ImageSpec, error) {
	s, err := s.withDefaults()
	if err != nil {
		return s, err
	}
	if s.BaseLayers == 0 {
		return s, fmt.Errorf("%w: %s has no base", ErrInvalidImageSpec, s.Tag)
	}
	i := strings.LastIndex(s.Tag, ":")
	return ImageSpec{
		Tag: s.Tag[:i] + "-base" + s.Tag[i:], Size: s.BaseSize, Layers: s.BaseLayers,
		BaseSize: s.BaseSize, BaseLayers: s.BaseLayers,
	}, nil
}

// layerPlan says what one layer holds.
type layerPlan struct {
	size  int64
	seed  [32]byte
	entry bool // holds the entrypoint
}

func (s ImageSpec) plan() []layerPlan {
	var out []layerPlan
	split := func(total int64, n int, i int) int64 {
		sz := total / int64(n)
		if i == n-1 {
			sz = total - sz*int64(n-1)
		}
		return sz
	}
	for i := 0; i < s.BaseLayers; i++ {
		out = append(out, layerPlan{
			size: split(s.BaseSize, s.BaseLayers, i),
			seed: sha256.Sum256(fmt.Appendf(nil, "base/%d/%d/%d", s.BaseSize, s.BaseLayers, i)),
		})
	}
	top := s.Layers - s.BaseLayers
	for i := 0; i < top; i++ {
		out = append(out, layerPlan{
			size: split(s.Size-s.BaseSize, top, i),
			seed: sha256.Sum256(fmt.Appendf(nil, "app/%s/%d", s.Seed, i)),
		})
	}
	out[0].entry = true
	return out
}

// epoch is the time stamp of every file and history entry, so the same spec
// always gives the same bytes.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// entrypointPath is where the static hello program lives in the image.
const entrypointPath = "app/hello"

// layerFiles lists the files of a layer in order.
func (p layerPlan) files(index int) []tarFile {
	var files []tarFile
	if p.entry {
		files = append(files,
			tarFile{name: "app/", dir: true},
			tarFile{name: entrypointPath, data: helloELF(HelloMessage), mode: 0o755})
	}
	files = append(files,
		tarFile{name: "data/", dir: true},
		tarFile{name: fmt.Sprintf("data/layer-%02d-%x.bin", index, p.seed[:4]), random: p.seed, size: p.size, mode: 0o644})
	return files
}

type tarFile struct {
	name   string
	dir    bool
	mode   int64
	data   []byte
	random [32]byte // when data is nil: size bytes from ChaCha8 seeded with this
	size   int64
}

func (f tarFile) header() *tar.Header {
	h := &tar.Header{Name: f.name, ModTime: epoch, Format: tar.FormatUSTAR, Uname: "root", Gname: "root"}
	switch {
	case f.dir:
		h.Typeflag, h.Mode = tar.TypeDir, 0o755
	case f.data != nil:
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, f.mode, int64(len(f.data))
	default:
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, f.mode, f.size
	}
	return h
}

// tarSize is the exact size of a tar of files as archive/tar writes it:
// a 512-byte header per entry, content padded to 512, two zero blocks.
func tarSize(files []tarFile) int64 {
	n := int64(1024)
	for _, f := range files {
		n += 512 + (f.header().Size+511)/512*512
	}
	return n
}

func writeTarFiles(w io.Writer, files []tarFile) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		if err := tw.WriteHeader(f.header()); err != nil {
			return err
		}
		switch {
		case f.dir:
		case f.data != nil:
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
		default:
			if _, err := io.CopyN(tw, rand.NewChaCha8(f.random), f.size); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

// WriteImage writes the image as a docker-save archive (what docker load
// reads) to w. The same spec always gives the same bytes; layer content is
// pseudo-random and does not compress.
func WriteImage(w io.Writer, spec ImageSpec) (ImageInfo, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return ImageInfo{}, err
	}
	cw := &countingWriter{w: w}
	out := tar.NewWriter(cw)
	info := ImageInfo{Tag: spec.Tag}
	var layerPaths []string
	var history []map[string]any
	for i, p := range spec.plan() {
		files := p.files(i)
		h := sha256.New()
		// The layer's directory name only has to be unique in the archive.
		dir := hex.EncodeToString(p.seed[:]) + fmt.Sprint(i)
		if err := out.WriteHeader(&tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return info, fmt.Errorf("write layer %d: %w", i, err)
		}
		if err := writeEntry(out, dir+"/VERSION", []byte("1.0")); err != nil {
			return info, fmt.Errorf("write layer %d: %w", i, err)
		}
		if err := out.WriteHeader(&tar.Header{Name: dir + "/layer.tar", Typeflag: tar.TypeReg, Mode: 0o644, Size: tarSize(files), ModTime: epoch}); err != nil {
			return info, fmt.Errorf("write layer %d: %w", i, err)
		}
		if err := writeTarFiles(io.MultiWriter(out, h), files); err != nil {
			return info, fmt.Errorf("write layer %d: %w", i, err)
		}
		info.DiffIDs = append(info.DiffIDs, "sha256:"+hex.EncodeToString(h.Sum(nil)))
		layerPaths = append(layerPaths, dir+"/layer.tar")
		history = append(history, map[string]any{
			"created":    epoch,
			"created_by": fmt.Sprintf("testbed image: layer %d, %d bytes", i, p.size),
		})
	}
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch,
		"config": map[string]any{
			"Entrypoint": []string{"/" + entrypointPath},
			"Env":        []string{"PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"WorkingDir": "/",
			"Labels":     map[string]string{"org.layercast.testbed.spec": specLabel(spec)},
		},
		"rootfs":  map[string]any{"type": "layers", "diff_ids": info.DiffIDs},
		"history": history,
	}
	cfg, err := json.Marshal(config)
	if err != nil {
		return info, fmt.Errorf("encode image config: %w", err)
	}
	sum := sha256.Sum256(cfg)
	info.ID = "sha256:" + hex.EncodeToString(sum[:])
	cfgName := hex.EncodeToString(sum[:]) + ".json"
	if err := writeEntry(out, cfgName, cfg); err != nil {
		return info, fmt.Errorf("write image config: %w", err)
	}
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": []string{spec.Tag}, "Layers": layerPaths,
	}})
	if err != nil {
		return info, fmt.Errorf("encode manifest: %w", err)
	}
	if err := writeEntry(out, "manifest.json", manifest); err != nil {
		return info, fmt.Errorf("write manifest: %w", err)
	}
	if err := out.Close(); err != nil {
		return info, fmt.Errorf("close image archive: %w", err)
	}
	info.Bytes = cw.n
	return info, nil
}

func specLabel(s ImageSpec) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// helloELF returns a minimal static x86-64 Linux executable that writes msg
// to standard output and exits 0: one loadable segment holding the ELF
// header, the program header, 33 bytes of code and msg.
func helloELF(msg string) []byte {
	const (
		base     = 0x400000
		ehdrSize = 64
		phdrSize = 56
		codeOff  = ehdrSize + phdrSize
		codeLen  = 33
	)
	code := []byte{
		0xb8, 1, 0, 0, 0, // mov eax, 1 (write)
		0xbf, 1, 0, 0, 0, // mov edi, 1 (stdout)
		0x48, 0x8d, 0x35, 16, 0, 0, 0, // lea rsi, [rip+16] (msg, right after the code)
		0xba, 0, 0, 0, 0, // mov edx, len(msg)
		0x0f, 0x05, // syscall
		0xb8, 60, 0, 0, 0, // mov eax, 60 (exit)
		0x31, 0xff, // xor edi, edi
		0x0f, 0x05, // syscall
	}
	binary.LittleEndian.PutUint32(code[18:], uint32(len(msg)))
	total := uint64(codeOff + codeLen + len(msg))

	b := make([]byte, 0, total)
	le := binary.LittleEndian
	b = append(b, 0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	b = le.AppendUint16(b, 2)    // e_type: executable
	b = le.AppendUint16(b, 0x3e) // e_machine: x86-64
	b = le.AppendUint32(b, 1)    // e_version
	b = le.AppendUint64(b, base+codeOff)
	b = le.AppendUint64(b, ehdrSize) // e_phoff
	b = le.AppendUint64(b, 0)        // e_shoff
	b = le.AppendUint32(b, 0)        // e_flags
	b = le.AppendUint16(b, ehdrSize)
	b = le.AppendUint16(b, phdrSize)
	b = le.AppendUint16(b, 1) // e_phnum
	b = le.AppendUint16(b, 0) // e_shentsize
	b = le.AppendUint16(b, 0) // e_shnum
	b = le.AppendUint16(b, 0) // e_shstrndx
	b = le.AppendUint32(b, 1) // p_type: PT_LOAD
	b = le.AppendUint32(b, 5) // p_flags: R+X
	b = le.AppendUint64(b, 0) // p_offset
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, base)
	b = le.AppendUint64(b, total) // p_filesz
	b = le.AppendUint64(b, total) // p_memsz
	b = le.AppendUint64(b, 0x1000)
	b = append(b, code...)
	return append(b, msg...)
}

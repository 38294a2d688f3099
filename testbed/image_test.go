package testbed

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

// readArchive returns every file of a docker-save archive.
func readArchive(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = data
	}
}

func writeImage(t *testing.T, spec ImageSpec) ([]byte, ImageInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := WriteImage(&buf, spec)
	if err != nil {
		t.Fatal(err)
	}
	if info.Bytes != int64(buf.Len()) {
		t.Errorf("info.Bytes = %d, wrote %d", info.Bytes, buf.Len())
	}
	return buf.Bytes(), info
}

func TestWriteImage_ManifestConfigAndDiffIDsAgree(t *testing.T) {
	b, info := writeImage(t, ImageSpec{Tag: "lab/app:v1", Size: 3 << 20, Layers: 3})
	files := readArchive(t, b)
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) != 1 || manifest[0].RepoTags[0] != "lab/app:v1" || len(manifest[0].Layers) != 3 {
		t.Fatalf("manifest %+v", manifest)
	}
	cfg := files[manifest[0].Config]
	sum := sha256.Sum256(cfg)
	if "sha256:"+hex.EncodeToString(sum[:]) != info.ID {
		t.Errorf("image ID %s is not the config's digest", info.ID)
	}
	var config struct {
		Config struct{ Entrypoint []string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &config); err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, path := range manifest[0].Layers {
		layer := files[path]
		sum := sha256.Sum256(layer)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != config.RootFS.DiffIDs[i] || got != info.DiffIDs[i] {
			t.Errorf("layer %d digest %s, config says %s", i, got, config.RootFS.DiffIDs[i])
		}
		for name, data := range readArchive(t, layer) {
			if name != entrypointPath {
				total += int64(len(data))
			}
		}
	}
	if total != 3<<20 {
		t.Errorf("layers hold %d bytes of data, want %d", total, 3<<20)
	}
	if len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/"+entrypointPath {
		t.Errorf("entrypoint %v", config.Config.Entrypoint)
	}
}

func TestWriteImage_IsDeterministicAndIncompressible(t *testing.T) {
	spec := ImageSpec{Tag: "lab/app:v1", Size: 1 << 20, Layers: 2}
	a, _ := writeImage(t, spec)
	b, _ := writeImage(t, spec)
	if !bytes.Equal(a, b) {
		t.Fatal("same spec gave different archives")
	}
	c, _ := writeImage(t, ImageSpec{Tag: "lab/app:v2", Size: 1 << 20, Layers: 2})
	if bytes.Equal(a, c) {
		t.Fatal("different tags gave the same archive")
	}
	var z bytes.Buffer
	gz := gzip.NewWriter(&z)
	_, _ = gz.Write(a)
	_ = gz.Close()
	if z.Len() < len(a)*95/100 {
		t.Errorf("archive compresses from %d to %d bytes", len(a), z.Len())
	}
}

func TestWriteImage_SameBaseSharesLayers(t *testing.T) {
	_, app := writeImage(t, ImageSpec{Tag: "lab/app:v1", Size: 2 << 20, Layers: 4, BaseSize: 1 << 20, BaseLayers: 2})
	_, other := writeImage(t, ImageSpec{Tag: "lab/other:v1", Size: 3 << 20, Layers: 3, BaseSize: 1 << 20, BaseLayers: 2})
	baseSpec, err := ImageSpec{Tag: "lab/app:v1", Size: 2 << 20, Layers: 4, BaseSize: 1 << 20, BaseLayers: 2}.BaseSpec()
	if err != nil {
		t.Fatal(err)
	}
	_, base := writeImage(t, baseSpec)
	if base.Tag != "lab/app-base:v1" || len(base.DiffIDs) != 2 {
		t.Fatalf("base image %+v", base)
	}
	for i := range 2 {
		if app.DiffIDs[i] != other.DiffIDs[i] || app.DiffIDs[i] != base.DiffIDs[i] {
			t.Errorf("base layer %d differs: %s %s %s", i, app.DiffIDs[i], other.DiffIDs[i], base.DiffIDs[i])
		}
	}
	if app.DiffIDs[2] == other.DiffIDs[2] {
		t.Errorf("layers above the base are shared")
	}
}

func TestImageSpec_RejectsImpossibleSpecs(t *testing.T) {
	for _, spec := range []ImageSpec{
		{Tag: "", Size: 1, Layers: 1},
		{Tag: "a:b", Size: 10, Layers: 2, BaseSize: 20},
		{Tag: "a:b", Size: 10, Layers: 2, BaseSize: 5, BaseLayers: 2},
		{Tag: "a:b", Size: -1, Layers: 1},
	} {
		if _, err := WriteImage(io.Discard, spec); !errors.Is(err, ErrInvalidImageSpec) {
			t.Errorf("%+v: err %v", spec, err)
		}
	}
}

func TestHelloELF_IsAStaticAMD64Executable(t *testing.T) {
	f, err := elf.NewFile(bytes.NewReader(helloELF(HelloMessage)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || f.Class != elf.ELFCLASS64 {
		t.Errorf("elf header %+v", f.FileHeader)
	}
	if len(f.Progs) != 1 || f.Progs[0].Type != elf.PT_LOAD || f.Entry != f.Progs[0].Vaddr+64+56 {
		t.Errorf("program headers %+v entry %#x", f.Progs, f.Entry)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("not static: %v", p.Type)
		}
	}
}

func TestParseRateAndSize(t *testing.T) {
	for in, want := range map[string]int64{"100mbit": 100e6, "1gbit": 1e9, "2.5Gbit": 2.5e9, "800kbit": 800e3, "1000bit": 1000} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "100", "fast", "-1mbit", "0mbit"} {
		if _, err := ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	for in, want := range map[string]int64{"500MB": 500e6, "1GiB": 1 << 30, "64k": 64 << 10, "1024": 1024, "1.5 MB": 1.5e6, "20MiB": 20 << 20} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if _, err := ParseSize("lots"); err == nil {
		t.Error("ParseSize(lots) accepted")
	}
}

func TestConfig_Defaults(t *testing.T) {
	c, err := Config{Hosts: 2}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "lab" || c.Dir != "/tmp/layercast-lab-lab" || c.Rate != DefaultRate || c.Parallel != 16 || c.CongestionControl != DefaultCongestionControl {
		t.Errorf("defaults %+v", c)
	}
	for _, bad := range []Config{{Hosts: 0}, {Hosts: MaxHosts + 1}, {Hosts: 1, Name: "Bad Name"}, {Hosts: 1, Rate: "fast"}, {Hosts: 1, Delay: -1}, {Hosts: 1, CongestionControl: "bbr; reboot"}} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: err %v", bad, err)
		}
	}
}

func TestTestLabName_IsAValidLabName(t *testing.T) {
	for _, n := range []string{"TestLab", "TestLab/Sub_Test", "TestAVeryLongTestNameThatGoesOnAndOnForeverAndEver/x"} {
		name := testLabName(n)
		if !nameRE.MatchString(name) {
			t.Errorf("testLabName(%q) = %q is not a valid lab name", n, name)
		}
	}
}

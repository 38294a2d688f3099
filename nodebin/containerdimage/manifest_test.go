package containerdimage

import (
	"encoding/json"
	"testing"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

func TestImageName_IsWhatTheKubeletLooksFor(t *testing.T) {
	for in, want := range map[string]string{
		"lab/app:v1":                   "docker.io/lab/app:v1",
		"busybox":                      "docker.io/library/busybox:latest",
		"registry.lab:5000/app:v2":     "registry.lab:5000/app:v2",
		"registry.lab:5000/team/app":   "registry.lab:5000/team/app:latest",
		"docker.io/library/alpine:3.2": "docker.io/library/alpine:3.2",
	} {
		if got, err := ImageName(in); err != nil || got != want {
			t.Errorf("ImageName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ImageName("Not A Name"); err == nil {
		t.Error("accepted an invalid reference")
	}
}

func testImg(gz bool) Image {
	ti := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(1, "a", 10), dockerimage.LayerTar(2, "b", 20)}, gz, "m")
	img := Image{Name: "docker.io/lab/app:v1", ID: ti.ID, Config: ti.Config, Job: "j"}
	for _, l := range ti.Layers {
		mt := "tar"
		if gz {
			mt = "tar+gzip"
		}
		img.Layers = append(img.Layers, jobspec.Layer{DiffID: l.DiffID, ChainID: l.ChainID, Digest: l.Digest, Size: int64(len(l.File)), MediaType: mt})
	}
	return img
}

func TestManifest_NamesConfigAndLayersWithGCLabels(t *testing.T) {
	img := testImg(true)
	b, d, labels, err := img.manifest()
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if d.Digest != dockerimage.Digest(b) || d.MediaType != MediaTypeManifest || m.Config.Digest != img.ID || len(m.Layers) != 2 {
		t.Fatalf("manifest %s, descriptor %+v", b, d)
	}
	for i, l := range m.Layers {
		if l.Digest != img.Layers[i].Digest || l.MediaType != MediaTypeLayerGz || labels["containerd.io/gc.ref.content.l."+string(rune('0'+i))] != l.Digest {
			t.Errorf("layer %d: %+v, labels %v", i, l, labels)
		}
	}
	if labels["containerd.io/gc.ref.content.config"] != img.ID {
		t.Errorf("labels %v lack the config", labels)
	}
}

func TestImage_CheckRejectsInconsistentImages(t *testing.T) {
	if err := testImg(false).check(); err != nil {
		t.Fatalf("valid image: %v", err)
	}
	for name, edit := range map[string]func(*Image){
		"config not the ID's": func(i *Image) { i.ID = dockerimage.Digest([]byte("x")) },
		"diff IDs differ":     func(i *Image) { i.Layers[0].DiffID = i.Layers[1].DiffID },
		"chain IDs differ":    func(i *Image) { i.Layers[1].ChainID = i.Layers[0].ChainID },
		"unknown media type":  func(i *Image) { i.Layers[0].MediaType = "tar+zstd" },
		"layer missing":       func(i *Image) { i.Layers = i.Layers[:1] },
	} {
		img := testImg(false)
		edit(&img)
		if err := img.check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

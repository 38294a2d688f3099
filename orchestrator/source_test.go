package orchestrator

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/registrysource/registrytest"
)

// registryLab is a testLab whose bastion has no Docker daemon, with an
// index of linux/amd64 and linux/arm64 images sharing their base layer in
// a real registry.
func registryLab(t *testing.T, inventory string, hosts ...string) (*testLab, *registrytest.Registry, string, [2]string) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	reg := registrytest.Start(t, registrytest.Options{})
	base := registrytest.GzipLayer(t, registrytest.LayerTar(1, 200_000))
	amd := registrytest.Image(t, "linux/amd64", false, base, registrytest.GzipLayer(t, registrytest.LayerTar(2, 50_000)))
	arm := registrytest.Image(t, "linux/arm64", true, base, registrytest.GzipLayer(t, registrytest.LayerTar(3, 60_000), types.OCILayer))
	ref := reg.PushIndex(t, "team/app:v2", registrytest.Index(t, amd, arm))
	l := newTestLab(t, hosts...)
	l.deps.Docker = nil
	if inventory != "" {
		if err := os.WriteFile(l.inv, []byte(inventory), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return l, reg, ref, [2]string{registrytest.ConfigDigest(t, amd), registrytest.ConfigDigest(t, arm)}
}

func arm64Host(c *hostops.FakeConn) {
	c.Facts.Arch, c.Facts.Machine = "arm64", "aarch64"
}

func TestEngine_RegistrySourceServesAMixedFleetWithoutADaemon(t *testing.T) {
	inv := "hosts:\n  - name: amd\n    address: 127.0.0.2\n  - name: arm\n    address: 127.0.0.3\n    platform: linux/arm64\n    max_rate: 20MB/s\n"
	l, _, ref, ids := registryLab(t, inv, "amd", "arm")
	specs := make(chan *jobspec.Spec, 2)
	l.play("amd", fakeNode(t, specs, ""))
	arm64Host(l.play("arm", fakeNode(t, specs, "")))
	rep, rec, err := l.run(t, context.Background(), Options{Image: ref, HostMaxRate: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed: %+v", rep.Hosts)
	}
	info := rec.events[0].Job
	if info.Source != "registry" || len(info.Platforms) != 2 || len(info.Layers) != 3 || info.ImageID != "" {
		t.Errorf("job info: source %q, %d platforms, %d layer files, image ID %q; want registry, 2, 3 (the base once), none", info.Source, len(info.Platforms), len(info.Layers), info.ImageID)
	}
	close(specs)
	got := map[string]*jobspec.Spec{}
	for s := range specs {
		got[s.Host] = s
	}
	for host, want := range map[string]struct {
		id   string
		rate int64
	}{"amd": {ids[0], 1e6}, "arm": {ids[1], 20e6}} {
		s := got[host]
		if s.ImageID != want.id || s.MaxRate != want.rate {
			t.Errorf("%s: image %s rate %d, want %s %d", host, s.ImageID, s.MaxRate, want.id, want.rate)
		}
		for _, l := range s.Layers {
			if l.MediaType != jobspec.MediaTarGzip || l.UnpackedSize <= 0 || len(l.InfoHash) != 40 {
				t.Errorf("%s: layer %+v", host, l)
			}
		}
		if r := hostResults(rep)[host]; r.ImageID != want.id {
			t.Errorf("%s: report image %s", host, r.ImageID)
		}
	}
	if a, b := got["amd"].Layers[0], got["arm"].Layers[0]; a.Digest != b.Digest || a.InfoHash != b.InfoHash {
		t.Error("the shared base layer has two torrents")
	}
}

func TestEngine_HostOfAnotherPlatformThanItsInventoryFailsAloneBeforeItsNodeStarts(t *testing.T) {
	l, _, ref, _ := registryLab(t, "", "h1", "h2")
	specs := make(chan *jobspec.Spec, 2)
	l.play("h1", fakeNode(t, specs, ""))
	h2 := l.play("h2", fakeNode(t, specs, ""))
	arm64Host(h2) // the inventory says nothing: taken for the bastion's
	rep, _, err := l.run(t, context.Background(), Options{Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	res := hostResults(rep)
	if res["h1"].State != HostDone {
		t.Errorf("h1: %+v", res["h1"])
	}
	if r := res["h2"]; r.State != HostFailed || !strings.Contains(r.Error, "set platform: linux/arm64") {
		t.Errorf("h2: %s %q; want failed, saying to set its platform", r.State, r.Error)
	}
	if len(h2.Processes()) != 0 || len(h2.WorkDirs()) != 0 {
		t.Error("h2's node was started")
	}
}

func TestEngine_RegistryMistakesAreConfigErrors(t *testing.T) {
	l, reg, ref, _ := registryLab(t, "", "h1")
	armOnly := reg.Push(t, "team/armonly:v1", registrytest.Image(t, "linux/arm64", false, registrytest.GzipLayer(t, registrytest.LayerTar(4, 1000))))
	zstd := reg.Push(t, "team/zstd:v1", registrytest.Image(t, "linux/amd64", true, registrytest.RawLayer(registrytest.LayerTar(5, 1000), types.OCILayerZStd)))
	h1 := l.play("h1", fakeNode(t, make(chan *jobspec.Spec, 1), ""))
	for _, c := range []struct{ image, want string }{
		{reg.Ref("team/nosuch:v1"), "has no repository"},
		{strings.Replace(ref, ":v2", ":v9", 1), "has no tag v9"},
		{armOnly, "no image for linux/amd64"},
		{zstd, "zstd"},
		{"127.0.0.1:9/team/app:v1", "image not found"},
	} {
		_, rec, err := l.run(t, context.Background(), Options{Image: c.image})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line, a config error saying %q", c.image, err, c.want)
		}
		if len(rec.events) != 0 {
			t.Errorf("%s: %d events", c.image, len(rec.events))
		}
	}
	if n := len(h1.Calls()); n != 0 {
		t.Errorf("h1 was touched: %v", h1.Calls())
	}
}

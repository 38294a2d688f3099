package orchestrator

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/registry"
)

func TestRegistryAuth_ReadsTheImagesRegistryFromDockerConfig(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", dir)
	basic := base64.StdEncoding.EncodeToString([]byte("ci:s3cret:with:colons"))
	cfg := `{"auths": {"https://reg.example:5000/v2/": {"auth": "` + basic + `"},
		"https://index.docker.io/v1/": {"username": "hub", "password": "hubpw"},
		"other.example": {"auth": "` + basic + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		image, user, pass, server string
	}{
		{"reg.example:5000/app:v1", "ci", "s3cret:with:colons", "reg.example:5000"},
		{"library/alpine:3", "hub", "hubpw", "https://index.docker.io/v1/"},
		{"alpine", "hub", "hubpw", "https://index.docker.io/v1/"},
		{"none.example/app:v1", "", "", ""},
	} {
		got, err := registryAuth(c.image)
		if err != nil {
			t.Fatalf("%s: %v", c.image, err)
		}
		if c.user == "" {
			if got != "" {
				t.Errorf("%s: auth %q, want none", c.image, got)
			}
			continue
		}
		a, err := registry.DecodeAuthConfig(got)
		if err != nil {
			t.Fatalf("%s: %v", c.image, err)
		}
		if a.Username != c.user || a.Password != c.pass || a.ServerAddress != c.server {
			t.Errorf("%s: %+v", c.image, a)
		}
	}
}

func TestRegistryAuth_NoConfigMeansNoCredentials(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if got, err := registryAuth("reg.example/app:v1"); got != "" || err != nil {
		t.Errorf("auth %q, err %v", got, err)
	}
}

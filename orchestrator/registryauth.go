package orchestrator

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/registry"
)

// dockerHubAuthKey is the key under which docker login stores Docker Hub
// credentials in config.json.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// registryAuth returns the X-Registry-Auth value for image's registry as
// the bastion's Docker CLI config holds it (DOCKER_CONFIG, else
// ~/.docker/config.json), or "" when it holds none. In registry mode the
// node hands it to its daemon's pull; it travels in the job spec on the
// node's stdin only, never in arguments or files. Credentials kept by a
// credential helper (credsStore, credHelpers) are not read.
func registryAuth(image string) (string, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", nil
		}
		dir = filepath.Join(home, ".docker")
	}
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read docker config: %w", err)
	}
	var cfg struct {
		Auths map[string]registry.AuthConfig `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("read docker config %s: %w", path, err)
	}
	host := registryHost(image)
	var found *registry.AuthConfig
	for key, a := range cfg.Auths {
		if normalizeRegistry(key) == host {
			found = &a
			break
		}
	}
	if found == nil || (found.Auth == "" && found.Username == "" && found.IdentityToken == "") {
		return "", nil
	}
	a := *found
	if a.Auth != "" && a.Username == "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", fmt.Errorf("read docker config %s: auth for %s is not base64", path, host)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", fmt.Errorf("read docker config %s: auth for %s is not user:password", path, host)
		}
		a.Username, a.Password = user, pass
	}
	a.Auth, a.ServerAddress = "", host
	if host == "docker.io" {
		a.ServerAddress = dockerHubAuthKey
	}
	return registry.EncodeAuthConfig(a)
}

// registryHost is the registry part of an image reference; "docker.io"
// for Docker Hub.
func registryHost(image string) string {
	first, _, found := strings.Cut(image, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		return "docker.io"
	}
	return normalizeRegistry(first)
}

// loopbackRegistry reports whether a registry host (host[:port]) is on
// loopback: localhost, 127.0.0.0/8 or ::1.
func loopbackRegistry(reg string) bool {
	host := reg
	if h, _, err := net.SplitHostPort(reg); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// normalizeRegistry turns a config.json key ("https://reg:5000/v1/",
// "reg:5000") into a registry host.
func normalizeRegistry(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	key, _, _ = strings.Cut(key, "/")
	switch key {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return key
}

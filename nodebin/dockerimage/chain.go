// Package dockerimage talks to the local Docker daemon for the node binary:
// which layers it already has, loading an image from verified layer files as
// a docker-save stream, pulling from a registry, checking the result, and
// undoing everything a job created.
package dockerimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Digest returns "sha256:<hex>" of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// DiffIDs reads rootfs.diff_ids from an image config.
func DiffIDs(config []byte) ([]string, error) {
	var c struct {
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("image config: rootfs type %q, want layers", c.RootFS.Type)
	}
	return c.RootFS.DiffIDs, nil
}

// PrefixConfig returns config with its rootfs cut to the first n layers and
// its history cut after the entry that made layer n, so that it describes a
// valid image made of those n layers only. Loading it registers the layers
// under the same chain IDs as the full image.
func PrefixConfig(config []byte, n int) ([]byte, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("parse image config: %w", err)
	}
	var rootfs map[string]json.RawMessage
	if err := json.Unmarshal(c["rootfs"], &rootfs); err != nil {
		return nil, fmt.Errorf("parse image config rootfs: %w", err)
	}
	var diffIDs []string
	if err := json.Unmarshal(rootfs["diff_ids"], &diffIDs); err != nil {
		return nil, fmt.Errorf("parse image config diff_ids: %w", err)
	}
	if n < 1 || n > len(diffIDs) {
		return nil, fmt.Errorf("prefix of %d layers of an image with %d", n, len(diffIDs))
	}
	var err error
	if rootfs["diff_ids"], err = json.Marshal(diffIDs[:n]); err != nil {
		return nil, err
	}
	if c["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	if h, ok := c["history"]; ok {
		var history []struct {
			EmptyLayer bool `json:"empty_layer"`
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(h, &raw); err != nil {
			return nil, fmt.Errorf("parse image config history: %w", err)
		}
		if err := json.Unmarshal(h, &history); err != nil {
			return nil, fmt.Errorf("parse image config history: %w", err)
		}
		layers := 0
		for i, e := range history {
			if !e.EmptyLayer {
				layers++
			}
			if layers == n {
				raw = raw[:i+1]
				break
			}
		}
		if c["history"], err = json.Marshal(raw); err != nil {
			return nil, err
		}
	}
	return json.Marshal(c)
}

package node

import "testing"

func TestTagRef_GivesEveryImageATag(t *testing.T) {
	for in, want := range map[string]string{
		"app":                      "app:latest",
		"lab/app:v1":               "lab/app:v1",
		"registry.lab:5000/app":    "registry.lab:5000/app:latest",
		"docker.io/library/app:v2": "app:v2",
		"lab/app:v1@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": "lab/app:v1",
	} {
		if got, err := tagRef(in); err != nil || got != want {
			t.Errorf("tagRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"lab/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "lab/App:1", ""} {
		if got, err := tagRef(bad); err == nil {
			t.Errorf("tagRef(%q) = %q, want an error", bad, got)
		}
	}
}

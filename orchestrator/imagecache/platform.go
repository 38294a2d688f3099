package imagecache

import (
	"fmt"
	"strings"
)

// Platform is what an image is built for, as an image index names it:
// "linux/amd64", "linux/arm64", "linux/arm/v7".
type Platform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant,omitempty"`
}

// String is "os/architecture[/variant]".
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform reads "os/architecture[/variant]".
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/architecture[/variant], e.g. linux/arm64", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

// HostPlatform is the platform of a host from its OS ("linux", as Go or
// uname -s names it) and machine (uname -m: "x86_64", "aarch64", "armv7l").
func HostPlatform(os, machine string) Platform {
	p := Platform{OS: strings.ToLower(os)}
	switch machine {
	case "x86_64", "amd64":
		p.Architecture = "amd64"
	case "aarch64", "arm64", "armv8l", "aarch64_be":
		p.Architecture = "arm64"
	case "armv7l", "armv7":
		p.Architecture, p.Variant = "arm", "v7"
	case "armv6l":
		p.Architecture, p.Variant = "arm", "v6"
	case "i386", "i686":
		p.Architecture = "386"
	default:
		p.Architecture = machine
	}
	return p
}

// defaultVariant is the variant an image or host of arch has when it
// names none, as containerd normalises it.
func defaultVariant(arch string) string {
	switch arch {
	case "arm64":
		return "v8"
	case "arm":
		return "v7"
	}
	return ""
}

func (p Platform) normal() Platform {
	if p.Variant == "" {
		p.Variant = defaultVariant(p.Architecture)
	}
	return p
}

// RunsOn reports whether an image built for p runs on a host of platform
// host: same OS and architecture; on 32-bit arm a host runs its own variant
// and older ones (a v7 host runs v6 images), elsewhere only its own.
func (p Platform) RunsOn(host Platform) bool {
	p, host = p.normal(), host.normal()
	if p.OS != host.OS || p.Architecture != host.Architecture {
		return false
	}
	if p.Variant == host.Variant {
		return true
	}
	if p.Architecture == "arm" {
		return armLevel(p.Variant) > 0 && armLevel(p.Variant) <= armLevel(host.Variant)
	}
	return false
}

func armLevel(v string) int {
	switch v {
	case "v5":
		return 5
	case "v6":
		return 6
	case "v7":
		return 7
	case "v8":
		return 8
	}
	return 0
}

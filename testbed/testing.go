package testbed

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// RequiredEnv, when set to 1 (as CI does), turns RequireRoot's skips into
// failures, so a CI run cannot pass by skipping every lab test.
const RequiredEnv = "LAYERCAST_TESTBED_REQUIRED"

// RequireRoot skips t, with the reason, unless this process is root and the
// lab's Debian packages are installed or can be installed.
func RequireRoot(t testing.TB) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv(RequiredEnv) == "1" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("testbed: lab tests need root (network and mount namespaces, dockerd, sshd); run them as root, e.g. sudo -E go test ./...")
		return
	}
	if err := ensureDepsOnce(t); err != nil {
		skip("testbed: lab packages missing and not installable: %v", err)
	}
}

// LayercastBin is RequireRoot, then the layercast binary under test:
// LAYERCAST_BIN, which `make test` sets to the binary it built with its
// node binaries. Without it the test is skipped, or fails where
// RequiredEnv is set.
func LayercastBin(t testing.TB) string {
	t.Helper()
	RequireRoot(t)
	p := os.Getenv("LAYERCAST_BIN")
	if p == "" {
		if os.Getenv(RequiredEnv) == "1" {
			t.Fatal("LAYERCAST_BIN is not set; run the tests through `make test`")
		}
		t.Skip("LAYERCAST_BIN is not set; `make test` builds layercast with its node binaries and sets it")
	}
	return p
}

func ensureDepsOnce(t testing.TB) error {
	if len(MissingDeps()) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	return EnsureDeps(ctx)
}

// UpForTest brings up a lab for a test and takes it down in t.Cleanup. The
// lab is named after the test and lives in a directory of its own, so
// tests in parallel get labs of their own. It calls RequireRoot first.
func UpForTest(t testing.TB, cfg Config) *Lab {
	t.Helper()
	RequireRoot(t)
	if cfg.Name == "" {
		cfg.Name = testLabName(t.Name())
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Ephemeral = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	lab, err := Up(ctx, cfg)
	if err != nil {
		t.Fatalf("testbed: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := lab.Down(ctx); err != nil {
			t.Errorf("testbed: %v", err)
		}
	})
	return lab
}

// testLabName derives a valid lab name from a test name.
func testLabName(test string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(test) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 24 {
		name = name[:24]
	}
	return fmt.Sprintf("t-%s-%d", strings.Trim(name, "-"), os.Getpid()%10000)
}

package jobspec

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestChainIDs_FollowTheOCIDefinition(t *testing.T) {
	d := []string{sha("a"), sha("b"), sha("c")}
	got := ChainIDs(d)
	// ChainID(L0) = DiffID(L0); ChainID(Ln) = SHA256(ChainID(Ln-1) + " " + DiffID(Ln)).
	c1 := sha(d[0] + " " + d[1])
	want := []string{d[0], c1, sha(c1 + " " + d[2])}
	if !slices.Equal(got, want) {
		t.Errorf("ChainIDs = %v, want %v", got, want)
	}
}

func TestTempRef_IsAValidTagForAnyJobID(t *testing.T) {
	valid := func(tag string) bool {
		if len(tag) > 128 || tag == "" {
			return false
		}
		for i, r := range tag {
			ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '-'))
			if !ok {
				return false
			}
		}
		return true
	}
	for _, job := range []string{"job1", "2026-01-01T10:00:00Z/x y", strings.Repeat("j", 300)} {
		ref := TempRef(job, 12)
		repo, tag, _ := strings.Cut(ref, ":")
		if repo != TempRepo || !valid(tag) || !strings.HasSuffix(tag, "-12") {
			t.Errorf("TempRef(%q) = %q", job, ref)
		}
	}
}

func TestTempRefPrefix_StartsEveryTempRefOfTheJobOnly(t *testing.T) {
	for _, job := range []string{"20260101-120000-abcdef", "job 1"} {
		ref := TempRef(job, 3)
		if !strings.HasPrefix(ref, TempRefPrefix(job)) || !strings.HasPrefix(ref, AnyTempRefPrefix) {
			t.Errorf("TempRef(%q) = %q does not start with %q", job, ref, TempRefPrefix(job))
		}
		if strings.HasPrefix(TempRef(job+"0", 3), TempRefPrefix(job)) {
			t.Errorf("the prefix of job %q matches another job's images", job)
		}
	}
}

func TestProgressEveryFor_BoundsTheJobsProgressLines(t *testing.T) {
	for _, c := range []struct {
		hosts int
		want  time.Duration
	}{{1, 250 * time.Millisecond}, {12, 250 * time.Millisecond}, {50, time.Second}, {100, 2 * time.Second}, {200, 4 * time.Second}, {1000, 5 * time.Second}} {
		if got := ProgressEveryFor(c.hosts); got != c.want {
			t.Errorf("%d hosts: %s, want %s", c.hosts, got, c.want)
		}
	}
	for n := 1; n <= 10000; n++ {
		d := ProgressEveryFor(n)
		if lines := float64(n) / d.Seconds(); d < ReportEvery/2 && lines > ProgressLinesPerSecond+1e-9 {
			t.Fatalf("%d hosts every %s: %.1f lines/s", n, d, lines)
		}
		if d < DefaultProgressEvery || d > ReportEvery/2 {
			t.Fatalf("%d hosts: %s", n, d)
		}
	}
}

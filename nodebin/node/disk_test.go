package node

import (
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
)

func TestCheckSpace_SumsUsesOnOneFilesystem(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	if err := checkSpace([]diskUse{{path: dir, bytes: 1, what: "layer files"}}, log); err != nil {
		t.Errorf("1 byte does not fit: %v", err)
	}
	if err := checkSpace([]diskUse{{path: dir, bytes: 1 << 62, what: "layer files"}}, log); !errors.Is(err, ErrNoSpace) {
		t.Errorf("4 EiB fit: %v", err)
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	// Each use alone fits, the two on one filesystem do not.
	part := int64(fs.Bavail) * fs.Bsize / 10 * 6
	if err := checkSpace([]diskUse{{path: dir, bytes: part, what: "layer files"}}, log); err != nil {
		t.Fatalf("60%% of the free space does not fit: %v", err)
	}
	err := checkSpace([]diskUse{{path: dir, bytes: part, what: "layer files"}, {path: dir + "/.", bytes: part, what: "docker data root"}}, log)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("2 x 60%% of the free space fit: %v", err)
	}
	for _, want := range []string{"free in " + dir + " and " + dir + "/.", "job needs " + human(2*part), "layer files " + human(part) + " + docker data root " + human(part)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if err := checkSpace([]diskUse{{path: "/nonexistent/x", bytes: 1 << 62}}, log); err != nil {
		t.Errorf("an unreadable path must be skipped, got %v", err)
	}
}

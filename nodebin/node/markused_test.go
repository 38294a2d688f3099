package node

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// The node marks the cached binary it runs from as used, so that the
// cache's pruning (by modification time) keeps it; a file it cannot mark
// does not fail the job.
func TestMarkUsed_SetsTheCachedFilesModificationTime(t *testing.T) {
	dir := t.TempDir()
	bin, gz := filepath.Join(dir, "layercast-node-x"), filepath.Join(dir, "layercast-node-x.gz")
	old := time.Now().Add(-30 * 24 * time.Hour)
	for _, f := range []string{bin, gz} {
		if err := os.WriteFile(f, []byte("node"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, old, old); err != nil {
			t.Fatal(err)
		}
	}
	gone := filepath.Join(dir, "gone")
	j := &job{spec: &jobspec.Spec{MarkUsed: []string{bin, gone, gz}}, log: slog.New(slog.DiscardHandler)}
	before := time.Now().Add(-time.Second)
	if err := (&markUsedStep{j: j}).Run(context.Background()); err != nil {
		t.Fatalf("a file that cannot be marked failed the step: %v", err)
	}
	for _, f := range []string{bin, gz} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.ModTime().Before(before) {
			t.Errorf("%s still dated %v", f, st.ModTime())
		}
	}
}

// The node's stamp is what `stat -c jobspec.CacheStampFormat` prints, the
// line the bastion's cache check compares; marking a stamped binary used
// renews a stamp that matched and leaves one that did not, so a binary
// changed since its last check is hashed by the next job.
func TestMarkUsed_RenewsTheStampOnlyOfABinaryThatMatchedIt(t *testing.T) {
	dir := t.TempDir()
	stat := func(p string) string {
		t.Helper()
		out, err := exec.Command("stat", "-c", jobspec.CacheStampFormat, "--", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	stamped := func(name string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("node"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+jobspec.CacheStampSuffix, []byte(stat(p)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kept, changed := stamped("layercast-node-a"), stamped("layercast-node-b")
	if !stampHolds(kept) {
		t.Fatal("a stamp written by stat(1) does not hold for the node")
	}
	time.Sleep(20 * time.Millisecond) // past the filesystem's clock tick
	if err := os.WriteFile(changed, []byte("edon"), 0o700); err != nil {
		t.Fatal(err)
	}
	staleStamp, err := os.ReadFile(changed + jobspec.CacheStampSuffix)
	if err != nil {
		t.Fatal(err)
	}

	j := &job{spec: &jobspec.Spec{MarkUsed: []string{kept, changed}}, log: slog.New(slog.DiscardHandler)}
	if err := (&markUsedStep{j: j}).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(kept + jobspec.CacheStampSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if want := stat(kept); string(got) != want {
		t.Errorf("after the touch the stamp says %q, stat says %q", got, want)
	}
	if got, _ := os.ReadFile(changed + jobspec.CacheStampSuffix); string(got) != string(staleStamp) {
		t.Errorf("the stamp of a binary changed since was renewed: %q", got)
	}
	if stampHolds(changed) {
		t.Error("the stamp of a binary changed since holds")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.partial-*")); len(left) != 0 {
		t.Errorf("partial files left: %q", left)
	}
}

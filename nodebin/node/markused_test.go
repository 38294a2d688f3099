package node

import (
	"context"
	"log/slog"
	"os"
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

package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// Another job's dir is looked for in every work-dir base the bastion
// named, so that a live job under /var/tmp is not taken for over because
// its dir is not in /tmp.
func TestWorkDirOf_FindsOtherJobsInEveryBase(t *testing.T) {
	own, other := t.TempDir(), t.TempDir()
	live := filepath.Join(other, jobspec.WorkDirName("live"))
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	j := &job{spec: &jobspec.Spec{WorkDir: filepath.Join(own, jobspec.WorkDirName("me")), WorkBases: []string{own, other}}}
	if got := j.workDirOf("live"); got != live {
		t.Errorf("dir of a job in the second base: %s, want %s", got, live)
	}
	if got := j.workDirOf("gone"); got != jobspec.WorkDir("gone") || !jobOver(got) {
		t.Errorf("dir of a job in no base: %s (over %v), want a dir that is gone", got, jobOver(got))
	}
}

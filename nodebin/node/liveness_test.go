package node

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

func TestJobOver_OnlyWhenNobodyHoldsTheLockOrTheDirIsGone(t *testing.T) {
	base := t.TempDir()
	live := filepath.Join(base, "layercast-live")
	if err := os.Mkdir(live, 0o700); err != nil {
		t.Fatal(err)
	}
	release, err := holdLock(live)
	if err != nil {
		t.Fatal(err)
	}
	if jobOver(live) {
		t.Fatal("a job whose node holds its lock counts as over")
	}
	// A second holder (another node of the same job) is refused.
	if _, err := holdLock(live); err == nil {
		t.Fatal("the lock was taken twice")
	}
	// A node that holds its lock but stopped touching it (frozen, its
	// bastion gone) counts as over once jobspec.AliveWithin passed.
	stale := time.Now().Add(-jobspec.AliveWithin - time.Second)
	if err := os.Chtimes(filepath.Join(live, jobspec.LockFile), stale, stale); err != nil {
		t.Fatal(err)
	}
	if !jobOver(live) {
		t.Fatal("a node that stopped touching its lock still counts as alive")
	}
	release()
	if !jobOver(live) {
		t.Fatal("a job whose lock nobody holds does not count as over")
	}
	starting := filepath.Join(base, "layercast-starting")
	if err := os.Mkdir(starting, 0o700); err != nil {
		t.Fatal(err)
	}
	if jobOver(starting) {
		t.Fatal("a dir whose node has not started yet (no lock file) counts as over")
	}
	if !jobOver(filepath.Join(base, "layercast-gone")) {
		t.Fatal("a job whose dir is gone does not count as over")
	}
}

func TestJobOver_LockHeldByAnotherProcess(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1) on this machine")
	}
	dir := t.TempDir()
	lock := filepath.Join(dir, jobspec.LockFile)
	// flock(1) holds the lock while its child sleeps (-o: the child does
	// not inherit it); the child's line says the lock is held.
	cmd := exec.Command(flock, "-o", lock, "sh", "-c", "echo locked; exec sleep 30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	kill := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
	t.Cleanup(kill)
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil {
		t.Fatal(err)
	}
	if jobOver(dir) {
		t.Fatal("a job whose lock another process holds counts as over")
	}
	kill()
	if !jobOver(dir) {
		t.Fatal("the lock of a killed process still counts as held")
	}
}

func TestRemoveDeadTemps_LeavesLiveJobsAlone(t *testing.T) {
	base := t.TempDir()
	dirOf := func(job string) string { return filepath.Join(base, "layercast-"+job) }
	for _, job := range []string{"own", "live"} {
		if err := os.Mkdir(dirOf(job), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	release, err := holdLock(dirOf("live"))
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	fd := dockerimage.NewFakeDaemon()
	img := dockerimage.NewTestImage([][]byte{dockerimage.LayerTar(7, "f", 100)}, false, "7")
	for _, ref := range []string{jobspec.TempRef("own", 1), jobspec.TempRef("live", 1), jobspec.TempRef("dead", 1), jobspec.TempRef("dead", 2), "app:v1"} {
		fd.Put(img, ref)
	}
	removed, err := removeDeadTemps(context.Background(), dockerimage.New(fd, nil), "own", func(job string) bool { return jobOver(dirOf(job)) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{jobspec.TempRef("dead", 1), jobspec.TempRef("dead", 2)}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	refs := fd.Refs()
	for _, keep := range []string{jobspec.TempRef("own", 1), jobspec.TempRef("live", 1), "app:v1"} {
		if _, ok := refs[keep]; !ok {
			t.Errorf("%s was removed", keep)
		}
	}
}

func TestTempRefJob(t *testing.T) {
	for ref, want := range map[string]string{
		jobspec.TempRef("20261130-101010-abc123", 3): "20261130-101010-abc123",
		"layercast-tmp:jx-1":                         "x",
		"layercast-tmp:latest":                       "",
		"app:v1":                                     "",
	} {
		got, ok := tempRefJob(ref)
		if got != want || ok != (want != "") {
			t.Errorf("tempRefJob(%q) = %q, %v; want %q", ref, got, ok, want)
		}
	}
}

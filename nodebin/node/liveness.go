package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/layercast/layercast/nodebin/dockerimage"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// holdLock creates the work dir's lock file and holds it, exclusively, until
// the returned func is called (or the process ends, which the kernel takes
// as a release): as long as it is held, another job on this host counts
// this one as alive and leaves its dir, node and temporary images alone.
func holdLock(dir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, jobspec.LockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w (is another node running this job?)", f.Name(), err)
	}
	// Touch the lock while alive: a node that stops touching it (frozen,
	// starved) counts as over for other jobs after jobspec.AliveWithin.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(jobspec.AliveEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				_ = os.Chtimes(f.Name(), now, now)
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(stop)
		<-done
		f.Close()
	}), nil
}

// jobOver reports whether the job that owns work dir dir is provably over:
// its dir is gone (a node removes it when it exits), or its lock file
// exists and nobody holds it, or nobody touched it for
// jobspec.AliveWithin (its node hangs past its own heartbeat timeout). A dir without a lock file belongs to a job
// whose node has not started yet, and one this process cannot read to a
// job of another user: neither counts as over.
func jobOver(dir string) bool {
	f, err := os.Open(filepath.Join(dir, jobspec.LockFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		_, derr := os.Stat(dir)
		return errors.Is(derr, fs.ErrNotExist)
	case err != nil:
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		// Held: the job's node runs, unless it stopped touching the lock.
		fi, err := f.Stat()
		return err == nil && time.Since(fi.ModTime()) > jobspec.AliveWithin
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true
}

// removeDeadTemps removes the temporary images of the jobs on this host
// that are over (see jobOver) but left some behind: their node was killed
// before it could clean up. Images of live jobs, this one included, stay.
// over says whether a job is over (jobOver of its work dir). It returns
// the references removed.
func removeDeadTemps(ctx context.Context, d *dockerimage.Daemon, ownJob string, over func(job string) bool) ([]string, error) {
	refs, err := d.TempRefs(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	ended := map[string]bool{}
	for _, ref := range refs {
		job, ok := tempRefJob(ref)
		if !ok || job == ownJob {
			continue
		}
		o, seen := ended[job]
		if !seen {
			o = over(job)
			ended[job] = o
		}
		if !o {
			continue
		}
		if err := d.Remove(ctx, ref, false); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ref)
	}
	return removed, errors.Join(errs...)
}

// tempRefJob returns the job ID in a TempRef, "layercast-tmp:j<job>-<n>".
func tempRefJob(ref string) (string, bool) {
	rest, ok := strings.CutPrefix(ref, jobspec.AnyTempRefPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

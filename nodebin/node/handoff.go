package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/layercast/layercast/nodebin/handoff"
	"github.com/layercast/layercast/nodebin/jobspec"
)

// handoffStep serves the node binary to the job's other hosts while the
// node runs (spec.Handoff), so that the bastion uploads it to a few hosts
// only. It starts as early as it can, before the daemon is asked anything,
// and a failure to serve is logged, not fatal: the other hosts then fetch
// the binary elsewhere.
type handoffStep struct {
	j   *job
	srv *handoff.Server
}

func (s *handoffStep) Title() string { return "hand the node binary on" }

func (s *handoffStep) Run(ctx context.Context) error {
	spec := s.j.spec
	if spec.Handoff == nil || len(spec.AllowedIPs) == 0 {
		return nil
	}
	ln, err := net.Listen("tcp", ":0")
	if err == nil {
		s.srv, err = handoff.Start(ln, handoff.Config{
			Path: spec.Handoff.Path, Name: spec.Handoff.Name, AllowedIPs: spec.AllowedIPs,
			Logger: s.j.log.With("component", "handoff"),
		})
		if err != nil {
			ln.Close()
		}
	}
	if err != nil {
		s.j.log.Warn("cannot hand the node binary on", "err", err)
		s.j.ev.emit(jobspec.Event{Kind: jobspec.EventLog, Message: fmt.Sprintf("cannot hand the node binary on: %v", err)})
		return nil
	}
	s.j.handoff = s.srv
	port := s.srv.Addr().(*net.TCPAddr).Port
	s.j.ev.emit(jobspec.Event{Kind: jobspec.EventServing, Addr: net.JoinHostPort(spec.PublicIP, strconv.Itoa(port))})
	return nil
}

func (s *handoffStep) Cleanup(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	st := s.srv.Stats()
	s.j.log.Info("handed the node binary on", "transfers", st.Transfers, "bytes", st.Bytes, "torrent_bytes", st.DocBytes)
	return s.srv.Close(ctx)
}

// workDirOf is where job's work dir is on this host: in the first of the
// job's work-dir bases (and this job's own base) that holds it, else where
// it would be in /tmp (gone, so the job counts as over).
func (j *job) workDirOf(job string) string {
	bases := append([]string{filepath.Dir(j.spec.WorkDir)}, j.spec.WorkBases...)
	for _, b := range bases {
		d := filepath.Join(b, jobspec.WorkDirName(job))
		if _, err := os.Lstat(d); err == nil {
			return d
		}
	}
	return jobspec.WorkDir(job)
}

// staleTempsStep removes what this host's earlier jobs that are over left
// in the runtime (temporary images in Docker, an import lease in
// containerd) when their node was cut short before it could clean up;
// what jobs still running hold is left alone.
type staleTempsStep struct{ j *job }

func (s *staleTempsStep) Title() string { return "remove what ended jobs left in the runtime" }

func (s *staleTempsStep) Run(ctx context.Context) error {
	if s.j.rt == nil {
		return nil
	}
	over := func(job string) bool { return jobspec.ValidJobID(job) && jobOver(s.j.workDirOf(job)) }
	removed, err := s.j.rt.RemoveEnded(ctx, s.j.spec.JobID, over)
	if len(removed) > 0 {
		s.j.ev.emit(jobspec.Event{Kind: jobspec.EventLog, Message: fmt.Sprintf("removed what an ended job left in %s: %v", s.j.rt.Name(), removed)})
	}
	if err != nil {
		// Not this job's: report and go on.
		s.j.log.Warn("remove what ended jobs left", "err", err)
	}
	return nil
}

// markUsedStep marks the node cache's files this node runs from as used
// (spec.MarkUsed): their modification time is what the cache's pruning
// reads. The touch moves a file's status-change time, so a file whose
// stamp (jobspec.CacheStampSuffix) matched it just before gets the stamp
// renewed; one that did not match keeps the stale stamp, and the next job
// hashes the file. A file it cannot mark is logged, not fatal: at worst a
// later job hashes the binary again, or prunes it and brings it again.
type markUsedStep struct{ j *job }

func (s *markUsedStep) Title() string { return "mark the cached node binary used" }

func (s *markUsedStep) Run(ctx context.Context) error {
	now := time.Now()
	for _, p := range s.j.spec.MarkUsed {
		stamped := stampHolds(p)
		if err := os.Chtimes(p, now, now); err != nil {
			s.j.log.Warn("mark the cached node binary used", "file", p, "err", err)
			continue
		}
		if stamped {
			if err := renewStamp(p); err != nil {
				s.j.log.Warn("mark the cached node binary used", "err", err)
			}
		}
	}
	return nil
}

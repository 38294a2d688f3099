package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// hostSteps is each host's pipeline: reach the host, learn about it, clear
// what earlier jobs left, bring the node binary into a fresh work dir,
// start the node and follow it. The steps keep what they learn in the
// host's hostRun; their cleanups are the host's teardown.
func hostSteps(j *job, book *hostBook, nodes *nodeassets.Set, fan *fanOut, registryAuth string) []step[*hostRun] {
	return []step[*hostRun]{
		connectStep{dialer: j.dialer, book: book},
		probeStep{},
		cleanStaleStep{jobID: j.id, emit: j.emit},
		nodeBinaryStep{nodes: nodes},
		workDirStep{jobID: j.id, book: book},
		uploadStep{fan: fan},
		startStep{j: j, book: book, registryAuth: registryAuth},
		followStep{},
	}
}

// connectStep opens the host's one SSH connection.
type connectStep struct {
	dialer Dialer
	book   *hostBook
}

func (connectStep) Title() string { return "connect" }

func (s connectStep) Run(ctx context.Context, hr *hostRun) error {
	s.book.set(hr.host.Name, HostConnecting, "")
	conn, err := s.dialer.Dial(ctx, hr.host)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	hr.conn = conn
	return nil
}

func (connectStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.conn != nil {
		_ = hr.conn.Close()
		hr.note(", SSH closed")
	}
}

// probeStep learns what the host is and whether it can take the job.
type probeStep struct{}

func (probeStep) Title() string { return "probe the host" }

func (probeStep) Run(ctx context.Context, hr *hostRun) error {
	facts, err := hr.conn.Probe(ctx)
	if err != nil {
		return fmt.Errorf("probe host: %w", err)
	}
	if err := facts.Usable(); err != nil {
		return err
	}
	hr.facts = facts
	return nil
}

// cleanStaleStep removes what earlier jobs left on the host: work dirs,
// nodes still running from them, temporary images. What it cannot remove
// it only reports.
type cleanStaleStep struct {
	jobID string
	emit  func(Event)
}

func (cleanStaleStep) Title() string { return "remove what earlier jobs left" }

func (s cleanStaleStep) Run(ctx context.Context, hr *hostRun) error {
	name := hr.host.Name
	if removed, err := hr.conn.CleanStale(ctx, s.jobID); err != nil {
		hr.log.Warn("clean up earlier jobs", "err", err)
	} else {
		for _, r := range removed {
			msg := "removed what an earlier job left: " + r.Dir
			if r.Killed {
				msg += fmt.Sprintf(" (stopped its node, pid %d)", r.PID)
			}
			if !r.Removed {
				msg = "could not remove " + r.Dir + " of an earlier job: " + r.Error
			}
			s.emit(Event{Kind: EventHostLog, Host: name, Message: msg})
		}
	}
	if refs, err := hr.conn.RemoveTempImages(ctx, s.jobID, false); err != nil {
		hr.log.Warn("remove temporary images of earlier jobs", "err", err)
	} else if len(refs) > 0 {
		s.emit(Event{Kind: EventHostLog, Host: name, Message: "removed temporary images an earlier job left: " + strings.Join(refs, ", ")})
	}
	return nil
}

// nodeBinaryStep picks the node binary for the host's CPU and checks,
// before anything is written, that the host has room for it.
type nodeBinaryStep struct{ nodes *nodeassets.Set }

func (nodeBinaryStep) Title() string { return "pick the node binary" }

func (s nodeBinaryStep) Run(ctx context.Context, hr *hostRun) error {
	bin, err := s.nodes.GetContext(ctx, hr.facts.Arch)
	if err != nil {
		return err
	}
	if err := roomForNode(hr.facts.TmpFree, bin.Size+int64(len(bin.Gz))); err != nil {
		return err
	}
	hr.binary = bin
	return nil
}

// ErrNoRoom means a host's /tmp cannot hold the node binary.
var ErrNoRoom = errors.New("not enough space in /tmp")

// roomForNode checks that /tmp (free bytes as probed; negative when
// unknown) can hold the node binary while it unpacks. The node itself
// checks the room for the layers.
func roomForNode(free, need int64) error {
	if free < 0 || free >= need {
		return nil
	}
	return fmt.Errorf("%w: the host has %.1f MB free in /tmp, the node binary needs %.1f MB; free space in /tmp", ErrNoRoom, float64(free)/1e6, float64(need)/1e6)
}

// workDirStep makes the job's fresh work dir on the host; its cleanup
// removes it with everything in it, stopping a node that still runs there.
type workDirStep struct {
	jobID string
	book  *hostBook
}

func (workDirStep) Title() string { return "make the work dir" }

func (s workDirStep) Run(ctx context.Context, hr *hostRun) error {
	// From here on the host is written to: shown as uploading.
	s.book.set(hr.host.Name, HostUploading, "")
	dir, err := hr.conn.MakeWorkDir(ctx, s.jobID)
	if err != nil {
		return fmt.Errorf("make job dir: %w", err)
	}
	hr.dir = dir
	return nil
}

func (workDirStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.dir == "" {
		return
	}
	if err := hr.conn.RemoveWorkDir(ctx, hr.dir); err != nil {
		hr.log.Warn("remove job dir", "dir", hr.dir, "err", err)
		hr.note("; could not remove " + hr.dir + ": " + err.Error())
		return
	}
	hr.note(", " + hr.dir + " removed")
}

// uploadStep sends the node binary into the work dir, holding one of the
// fan-out's upload slots.
type uploadStep struct{ fan *fanOut }

func (uploadStep) Title() string { return "upload the node binary" }

func (s uploadStep) Run(ctx context.Context, hr *hostRun) error {
	bin := hostops.Binary{Name: "layercast-node", Gzip: hr.binary.Gz, SHA256: hr.binary.SHA256}
	return s.fan.upload(ctx, func() error {
		path, err := hr.conn.Upload(ctx, hr.dir, bin)
		hr.nodeBin = path
		return err // says "upload node binary"
	})
}

// startStep starts the node with its job spec on stdin and hands back the
// host's fan-out slot: following a node holds none. Its cleanup stops the
// node.
type startStep struct {
	j            *job
	book         *hostBook
	registryAuth string
}

func (startStep) Title() string { return "start the node" }

func (s startStep) Run(ctx context.Context, hr *hostRun) error {
	spec, err := s.j.specFor(ctx, hr, s.registryAuth)
	if err != nil {
		return err
	}
	proc, err := hr.conn.Start(ctx, openssh.Command{Path: hr.nodeBin, Become: hr.host.Become})
	if err != nil {
		return fmt.Errorf("start node binary: %w", err)
	}
	imageID := ""
	if s.j.image != nil {
		imageID = s.j.image.ID
	}
	hr.node = followNode(proc, hr.host.Name, hr.log, s.book, s.j.emit, imageID)
	hr.release()
	// A node that dies at once fails the write; its stdout and stderr then
	// tell why, so follow it either way.
	if err := hr.node.send(spec); err != nil {
		hr.log.Debug("send job spec", "err", err)
	} else {
		go hr.node.heartbeat(ctx)
	}
	return nil
}

func (s startStep) Cleanup(ctx context.Context, hr *hostRun) {
	if hr.node == nil {
		return
	}
	msg := hr.node.stop(ctx)
	if !hr.node.cleanedUp() {
		// The node died without cleaning up: what it loaded into the
		// daemon for this job is still there.
		if refs, err := hr.conn.RemoveTempImages(ctx, s.j.id, true); err != nil {
			hr.log.Warn("remove temporary images", "err", err)
			msg += "; could not remove its temporary images: " + err.Error()
		} else if len(refs) > 0 {
			msg += ", its temporary images " + strings.Join(refs, ", ") + " removed"
		}
	}
	hr.note(msg)
}

// followStep lasts while the node runs: until it ends (an error when it
// ended before the host finished) or until the job's hosts are all done.
type followStep struct{}

func (followStep) Title() string { return "follow the node" }

func (followStep) Run(ctx context.Context, hr *hostRun) error {
	select {
	case <-hr.node.exited:
		return hr.node.err
	case <-ctx.Done():
		return nil
	}
}

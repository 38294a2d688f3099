package orchestrator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

const (
	// nodeStopGrace: how long a node gets to stop, clean up and exit.
	nodeStopGrace = 15 * time.Second
	// stderrTail bounds what is kept of a node's stderr to explain its end.
	stderrTail = 4 << 10
)

// node is the bastion's end of one running node binary: it writes the spec
// and the control lines to the node's stdin, turns the events on its
// stdout into the host's states and progress, and keeps the tail of its
// stderr to explain a node that died.
type node struct {
	host  string
	log   *slog.Logger
	proc  openssh.Process
	stdin *lineWriter
	// exited is closed when the node's stdout ended; err then says why the
	// events ended before the host finished (nil when it finished).
	exited chan struct{}
	err    error
	// sawExit is closed when the node said it cleaned up and exits; a
	// node that ends without saying so may have left temporary images.
	sawExit chan struct{}
	stderr  *tailBuffer
	// stderrDone is closed when the node's stderr ended.
	stderrDone chan struct{}
}

// nodeOutlets are where a node's events go: its states and progress move
// its host in book (a node that reports an image other than imageID fails;
// "" checks nothing; progress is matched to the job's layers by layers),
// its log lines are emitted, and serving hears where it hands the node
// binary on (host:port, the host part possibly empty).
type nodeOutlets struct {
	book    *hostBook
	emit    func(Event)
	imageID string
	layers  layerMatcher
	serving func(addr string)
	// torrents, when set, hears the node's answer to a ControlTorrents
	// line: it has the torrents (ok; serving them at addr, host:port,
	// when addr is set), or none of the hosts named served them (why).
	torrents func(addr string, ok bool, why string)
	// heard, when set, is called once: at the node's first event (it
	// has read its spec by then) or when its stdout ends.
	heard func()
}

// followNode follows a started node, sending its events to out.
func followNode(proc openssh.Process, host string, log *slog.Logger, out nodeOutlets) *node {
	n := &node{
		host: host, log: log, proc: proc,
		stdin:      &lineWriter{enc: jobspec.NewEncoder(proc.Stdin())},
		exited:     make(chan struct{}),
		sawExit:    make(chan struct{}),
		stderr:     &tailBuffer{max: stderrTail},
		stderrDone: make(chan struct{}),
	}
	go n.drainStderr(proc.Stderr())
	go func() {
		defer close(n.exited)
		n.err = n.follow(proc.Stdout(), out)
	}()
	return n
}

// send writes one line (the spec, or a control line) to the node.
func (n *node) send(v any) error { return n.stdin.send(v) }

// follow turns the node's events into the job's events until its stdout
// ends.
func (n *node) follow(stdout io.Reader, out nodeOutlets) error {
	name, book, imageID := n.host, out.book, out.imageID
	heard := sync.OnceFunc(func() {
		if out.heard != nil {
			out.heard()
		}
	})
	defer heard()
	dec := jobspec.NewDecoder(stdout)
	dropped := 0
	for {
		ev := nodeEvent{Progress: boundedProgress{max: out.layers.maxLayers()}}
		err := dec.Decode(&ev)
		heard()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read node events: %w", err)
		}
		book.heardFrom(name)
		switch ev.Kind {
		case jobspec.EventState:
			switch ev.State {
			case jobspec.StateChecking:
				book.set(name, HostChecking, ev.Message)
			case jobspec.StateDownloading:
				book.set(name, HostDownloading, ev.Message)
			case jobspec.StateImporting:
				book.set(name, HostImporting, ev.Message)
			case jobspec.StateDone:
				if imageID != "" && ev.ImageID != imageID {
					return fmt.Errorf("node reports image %s, bastion has %s", ev.ImageID, imageID)
				}
				book.setImageID(name, ev.ImageID)
				book.set(name, HostDone, "")
			case jobspec.StateFailed:
				book.set(name, HostFailed, ev.Message)
			}
		case jobspec.EventProgress:
			hp, err := (*HostProgress)(nil), ev.Progress.err
			if err == nil && ev.Progress.p != nil {
				hp, err = out.layers.match(ev.Progress.p)
			}
			if err != nil {
				// Once per node: a node that sends nonsense sends it often.
				if dropped++; dropped == 1 {
					n.log.Warn("node progress ignored", "err", err)
				}
				continue
			}
			if hp != nil {
				book.progress(name, hp)
			}
		case jobspec.EventLog:
			out.emit(Event{Kind: EventHostLog, Host: name, Message: ev.Message})
		case jobspec.EventServing:
			if out.serving != nil {
				out.serving(ev.Addr)
			}
		case jobspec.EventTorrents:
			if out.torrents != nil {
				out.torrents(ev.Addr, true, "")
			}
		case jobspec.EventNeedTorrents:
			if out.torrents != nil {
				out.torrents("", false, ev.Message)
			}
		case jobspec.EventError:
			book.set(name, HostFailed, ev.Message)
		case jobspec.EventExit:
			n.log.Debug("node exited", "msg", ev.Message)
			select {
			case <-n.sawExit:
			default:
				close(n.sawExit)
			}
		}
	}
	if st := book.state(name); !st.Terminal() {
		werr := n.proc.Wait()
		if errors.Is(werr, openssh.ErrConnectionLost) {
			return fmt.Errorf("%w; the node there stops and cleans up by itself within %s", werr, jobspec.DefaultHeartbeat)
		}
		select {
		case <-n.stderrDone:
		case <-time.After(2 * time.Second):
		}
		msg := "node binary exited early"
		if werr != nil {
			msg += ": " + werr.Error()
		}
		if tail := n.stderr.String(); tail != "" {
			msg += "; last output: " + tail
		}
		return errors.New(msg)
	}
	return nil
}

// heartbeat tells the node the bastion is alive until the node's stdout
// ends, its stdin is closed or ctx ends.
func (n *node) heartbeat(ctx context.Context) {
	t := time.NewTicker(jobspec.HeartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := n.send(jobspec.Control{Kind: jobspec.ControlHeartbeat}); err != nil {
				return
			}
		case <-n.exited:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stop tells the node to stop, gives it nodeStopGrace to clean up and
// exit, then ends it. It returns a line for the operator.
func (n *node) stop(ctx context.Context) string {
	_ = n.send(jobspec.Control{Kind: jobspec.ControlStop})
	n.stdin.close()
	sctx, cancel := context.WithTimeout(ctx, nodeStopGrace)
	defer cancel()
	select {
	case <-n.exited:
	case <-sctx.Done():
	}
	if err := n.proc.Stop(sctx); err != nil {
		n.log.Warn("stop node", "err", err)
	}
	return "node stopped"
}

// cleanedUp reports whether the node said it cleaned up before it exited.
func (n *node) cleanedUp() bool {
	select {
	case <-n.sawExit:
		return true
	default:
		return false
	}
}

// drainStderr reads the node's stderr to its end: a node whose stderr is
// not read blocks on its next log line, and its events with it. A line
// longer than stderrTail is kept cut; the rest of it is read and dropped.
func (n *node) drainStderr(r io.Reader) {
	defer close(n.stderrDone)
	eachLine(r, stderrTail, func(line string) {
		// The tail explains a node that died: its progress logs do not.
		if !routineLog(line) {
			n.stderr.add(line)
		}
		n.log.Debug("node", "stderr", line)
	})
}

// eachLine calls fn with every line of r, without its line end and cut to
// max bytes, until r ends or fails. However long a line, it costs at most
// the reader's buffer and max.
func eachLine(r io.Reader, max int, fn func(string)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	started := false
	for {
		frag, err := br.ReadSlice('\n')
		if len(frag) > 0 {
			started = true
			if room := max - len(line); room > 0 {
				line = append(line, frag[:min(len(frag), room)]...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if started {
			fn(strings.TrimRight(string(line), "\r\n"))
		}
		line, started = line[:0], false
		if err != nil {
			return
		}
	}
}

// routineLog reports whether a line of the node's stderr is one of its
// info or debug log records (slog's text format).
func routineLog(line string) bool {
	return strings.HasPrefix(line, "time=") && (strings.Contains(line, " level=INFO ") || strings.Contains(line, " level=DEBUG "))
}

// lineWriter serialises writes of JSON lines to a node's stdin.
type lineWriter struct {
	mu     sync.Mutex
	enc    *jobspec.Encoder
	closed bool
}

func (w *lineWriter) send(v any) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return io.ErrClosedPipe
	}
	return w.enc.Encode(v)
}

func (w *lineWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// tailBuffer keeps the last lines of a stream up to max bytes.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	lines []string
	size  int
}

func (b *tailBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	b.size += len(line) + 1
	for b.size > b.max && len(b.lines) > 1 {
		b.size -= len(b.lines[0]) + 1
		b.lines = b.lines[1:]
	}
}

// String is the last three lines, joined with " | ".
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.lines), 3)
	return strings.Join(b.lines[len(b.lines)-n:], " | ")
}

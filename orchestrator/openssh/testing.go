package openssh

import (
	"context"
	"errors"
	"io"
	"sync"
)

// FakeForward is a Forward for tests.
type FakeForward struct {
	Port  int
	Local string
	mu    sync.Mutex
	done  bool
}

func (f *FakeForward) RemotePort() int { return f.Port }

func (f *FakeForward) Close() error {
	f.mu.Lock()
	f.done = true
	f.mu.Unlock()
	return nil
}

// Closed reports whether Close was called.
func (f *FakeForward) Closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// FakeProcess is a Process whose other end the test plays: it reads what
// the orchestrator wrote with StdinReader, writes the command's output with
// StdoutWriter/StderrWriter and ends it with Exit.
type FakeProcess struct {
	stdinR           *io.PipeReader
	stdinW           *io.PipeWriter
	stdoutR, stderrR *io.PipeReader
	stdoutW, stderrW *io.PipeWriter

	once    sync.Once
	done    chan struct{}
	err     error
	mu      sync.Mutex
	stopped bool
}

func NewFakeProcess() *FakeProcess {
	p := &FakeProcess{done: make(chan struct{})}
	p.stdinR, p.stdinW = io.Pipe()
	p.stdoutR, p.stdoutW = io.Pipe()
	p.stderrR, p.stderrW = io.Pipe()
	return p
}

func (p *FakeProcess) Stdin() io.WriteCloser { return p.stdinW }
func (p *FakeProcess) Stdout() io.Reader     { return p.stdoutR }
func (p *FakeProcess) Stderr() io.Reader     { return p.stderrR }

// StdinReader reads what the orchestrator writes to the process.
func (p *FakeProcess) StdinReader() io.Reader { return p.stdinR }

// StdoutWriter and StderrWriter write the process's output.
func (p *FakeProcess) StdoutWriter() io.Writer { return p.stdoutW }
func (p *FakeProcess) StderrWriter() io.Writer { return p.stderrW }

// Exit ends the process with err (nil: exit status 0). Only the first call
// counts.
func (p *FakeProcess) Exit(err error) {
	p.once.Do(func() {
		p.err = err
		p.stdoutW.Close()
		p.stderrW.Close()
		p.stdinR.CloseWithError(errors.New("process exited"))
		close(p.done)
	})
}

// Done is closed when the process exited.
func (p *FakeProcess) Done() <-chan struct{} { return p.done }

func (p *FakeProcess) Wait() error {
	<-p.done
	return p.err
}

// Stop closes stdin and ends the process (exit status 0 unless it already
// exited otherwise).
func (p *FakeProcess) Stop(ctx context.Context) error {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.stdinW.Close()
	p.Exit(nil)
	return nil
}

// Stopped reports whether Stop was called.
func (p *FakeProcess) Stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped
}

var (
	_ Process = (*FakeProcess)(nil)
	_ Forward = (*FakeForward)(nil)
)

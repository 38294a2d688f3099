package orchestrator

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"runtime/metrics"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// resourceEvery is how often the engine samples its process during a job.
//
// Each sample reads two runtime/metrics values, /proc/self/status (about
// 1.5 kB) and the names of /proc/self/fd: with 200 hosts that is a few
// hundred descriptors (SSH connections, the seeder's peers), read in
// batches without stat calls. At 4 Hz this costs well under a millisecond
// of CPU per second, against the seeder's and the SSH sessions' tens.
const resourceEvery = 250 * time.Millisecond

// The runtime/metrics the sampler reads.
const (
	metricHeap       = "/memory/classes/heap/objects:bytes"
	metricGoroutines = "/sched/goroutines:goroutines"
)

// procSelf is where Linux shows the process itself.
const procSelf = "/proc/self"

// resourceSampler keeps the peaks of the process's memory, goroutines,
// open files and threads while a job runs, and its CPU since it started.
// Where /proc is missing (not Linux) the figures read from it stay zero.
type resourceSampler struct {
	every  time.Duration
	proc   string
	cancel context.CancelFunc
	done   chan struct{}
	cpu0   time.Duration // the process's CPU when sampling began

	mu      sync.Mutex
	metrics []metrics.Sample // reused by every sample; guarded by mu
	peak    BastionUse
}

// startResourceSampler takes a first sample, then one every `every` until
// ctx ends or stop is called.
func startResourceSampler(ctx context.Context, every time.Duration) *resourceSampler {
	return startSampling(ctx, every, procSelf)
}

// startSampling is startResourceSampler reading the /proc directory proc
// (a missing one leaves its figures zero).
func startSampling(ctx context.Context, every time.Duration, proc string) *resourceSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &resourceSampler{
		every: every, proc: proc, cancel: cancel, done: make(chan struct{}),
		cpu0:    processCPU(),
		metrics: []metrics.Sample{{Name: metricHeap}, {Name: metricGoroutines}},
	}
	s.sample()
	go s.loop(ctx)
	return s
}

func (s *resourceSampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample()
		}
	}
}

// stop ends the sampling, takes a last sample and returns the peaks with
// the CPU the process used since the sampler started. Hosts is left to
// the caller. stop may be called more than once.
func (s *resourceSampler) stop() BastionUse {
	s.cancel()
	<-s.done
	s.sample()
	use := s.peaks()
	use.CPUSeconds = (processCPU() - s.cpu0).Seconds()
	return use
}

// peaks returns the peaks so far (CPUSeconds not set).
func (s *resourceSampler) peaks() BastionUse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// sample reads the process once and raises the peaks.
func (s *resourceSampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	metrics.Read(s.metrics)
	if v := s.metrics[0].Value; v.Kind() == metrics.KindUint64 {
		s.peak.PeakHeap = max(s.peak.PeakHeap, int64(v.Uint64()))
	}
	if v := s.metrics[1].Value; v.Kind() == metrics.KindUint64 {
		s.peak.PeakGoroutines = max(s.peak.PeakGoroutines, int(v.Uint64()))
	}
	if st, err := readProcStatus(s.proc + "/status"); err == nil {
		s.peak.PeakRSS = max(s.peak.PeakRSS, st.rss)
		s.peak.HWM = max(s.peak.HWM, st.hwm)
		s.peak.PeakThreads = max(s.peak.PeakThreads, st.threads)
	}
	if n, err := countOpenFiles(s.proc + "/fd"); err == nil {
		s.peak.PeakOpenFiles = max(s.peak.PeakOpenFiles, n)
	}
	s.peak.Samples++
}

// procStatus is what the sampler takes from /proc/PID/status.
type procStatus struct {
	rss, hwm int64 // bytes
	threads  int
}

// readProcStatus reads VmRSS, VmHWM and Threads from a /proc/PID/status
// file.
func readProcStatus(path string) (procStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStatus{}, err // *PathError names the file
	}
	return parseProcStatus(b), nil
}

// parseProcStatus parses the lines of a /proc/PID/status text the sampler
// needs; the ones it lacks stay zero.
func parseProcStatus(b []byte) procStatus {
	var st procStatus
	kB := func(v []byte) int64 {
		n, _ := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))), 10, 64)
		return n * 1024
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		name, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(name) {
		case "VmRSS":
			st.rss = kB(v)
		case "VmHWM":
			st.hwm = kB(v)
		case "Threads":
			st.threads, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return st
}

// countOpenFiles counts the entries of a /proc/PID/fd directory, less the
// one open to read it. It reads names only, in batches, without stat.
func countOpenFiles(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err // *PathError names the directory
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(256)
		n += len(names)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return max(n-1, 0), nil
}

// processCPU is the user and system CPU time the process has used; 0 when
// the system does not tell.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package orchestrator

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"testing"
	"time"
)

// haveProc reports whether this system shows the process in /proc.
func haveProc() bool {
	_, err := os.Stat(procSelf + "/status")
	return err == nil
}

// waitPeaks polls s until ok holds for its peaks or a few seconds pass.
func waitPeaks(t *testing.T, s *resourceSampler, what string, ok func(BastionUse) bool) BastionUse {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := s.peaks()
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: peaks never got there: %+v", what, p)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestResourceSampler_PeaksFollowWhatTheProcessHolds(t *testing.T) {
	const (
		goroutines = 500
		files      = 200
		threads    = 24
		heap       = 64 << 20
	)
	s := startResourceSampler(context.Background(), 10*time.Millisecond)
	defer s.stop()
	base := s.peaks()
	if base.Samples < 1 || base.PeakGoroutines < 1 || base.PeakHeap <= 0 {
		t.Fatalf("first sample %+v: no goroutines or heap", base)
	}
	// The bounds below are what the process must hold while the test
	// holds its goroutines, files and memory; they would prove nothing if
	// the process held as much before.
	if base.PeakGoroutines >= goroutines || base.PeakOpenFiles >= files || base.PeakThreads > threads || base.PeakHeap >= heap {
		t.Skipf("the test process is already as large as the test makes it: %+v", base)
	}

	release := make(chan struct{})
	started := make(chan struct{}, goroutines+threads)
	for range goroutines {
		go func() { started <- struct{}{}; <-release }()
	}
	// A goroutine locked to its thread keeps that thread while it blocks,
	// so the process needs a thread for each (it exits with the goroutine).
	for range threads {
		go func() { runtime.LockOSThread(); started <- struct{}{}; <-release }()
	}
	for range goroutines + threads {
		<-started
	}
	var open []*os.File
	defer func() {
		for _, f := range open {
			f.Close()
		}
	}()
	for range files {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, f)
	}
	held := make([]byte, heap)
	// The heap may reuse pages earlier tests left resident: fresh pages
	// from the kernel, each touched, are what surely grows the RSS. The
	// runtime first returns what it does not use, so that its scavenger
	// cannot shrink the RSS while the test watches it grow.
	var rss0 int64
	if haveProc() {
		debug.FreeOSMemory()
		st, err := readProcStatus(procSelf + "/status")
		if err != nil {
			t.Fatal(err)
		}
		rss0 = st.rss
		mem, err := syscall.Mmap(-1, 0, heap, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			t.Fatal(err)
		}
		defer syscall.Munmap(mem)
		for i := 0; i < len(mem); i += 4096 {
			mem[i] = 1
		}
	}

	p := waitPeaks(t, s, "holding", func(p BastionUse) bool {
		ok := p.PeakGoroutines >= goroutines+threads && p.PeakHeap >= heap
		if haveProc() {
			ok = ok && p.PeakOpenFiles >= files && p.PeakThreads > threads && p.PeakRSS >= rss0+heap*3/4
		}
		return ok
	})
	t.Logf("RSS %d MB before the test's %d MB, peak %d MB", rss0>>20, heap>>20, p.PeakRSS>>20)
	if haveProc() && p.HWM < p.PeakRSS {
		t.Errorf("VmHWM %d below a sampled VmRSS %d", p.HWM, p.PeakRSS)
	}
	runtime.KeepAlive(held)

	// Let go of everything: the peaks stay.
	close(release)
	for _, f := range open {
		f.Close()
	}
	open = nil
	held = nil
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	after := s.peaks()
	if after.PeakGoroutines < p.PeakGoroutines || after.PeakOpenFiles < p.PeakOpenFiles || after.PeakHeap < p.PeakHeap || after.PeakRSS < p.PeakRSS {
		t.Errorf("peaks fell once released: %+v, were %+v", after, p)
	}
	if after.Samples <= p.Samples {
		t.Errorf("no sample in 50 ms at 10 ms: %d then %d", p.Samples, after.Samples)
	}

	// Burn some CPU: stop counts it.
	cpu0 := processCPU()
	for x := 0; processCPU()-cpu0 < 30*time.Millisecond; x++ {
		_ = x * x
	}
	use := s.stop()
	if use.CPUSeconds < 0.03 {
		t.Errorf("CPU %.3f s, want at least the 30 ms burnt", use.CPUSeconds)
	}
	if use.PeakGoroutines < goroutines+threads {
		t.Errorf("stop lost the peaks: %+v", use)
	}
	t.Logf("%+v", use)
}

func TestResourceSampler_StopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := startResourceSampler(ctx, time.Millisecond)
	waitPeaks(t, s, "sampling", func(p BastionUse) bool { return p.Samples >= 3 })
	cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the sampler still runs after its context ended")
	}
	n := s.peaks().Samples
	time.Sleep(20 * time.Millisecond)
	if m := s.peaks().Samples; m != n {
		t.Errorf("%d samples after the context ended, want none", m-n)
	}
	// stop still answers, with one last sample, and again.
	if use := s.stop(); use.Samples != n+1 {
		t.Errorf("stop took %d samples, want 1", use.Samples-n)
	}
	s.stop()
}

func TestResourceSampler_WithoutProcLeavesItsFiguresZero(t *testing.T) {
	s := startSampling(context.Background(), time.Hour, filepath.Join(t.TempDir(), "no-proc"))
	use := s.stop()
	if use.PeakRSS != 0 || use.HWM != 0 || use.PeakOpenFiles != 0 || use.PeakThreads != 0 {
		t.Errorf("figures from a missing /proc: %+v", use)
	}
	if use.PeakGoroutines < 1 || use.PeakHeap <= 0 || use.Samples != 2 {
		t.Errorf("runtime figures missing: %+v", use)
	}
}

func TestParseProcStatus_ReadsRSSHWMAndThreads(t *testing.T) {
	st := parseProcStatus([]byte("Name:\tlayercast\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t17\nSigQ:\t0/63\n"))
	if st.rss != 100<<20 || st.hwm != 200<<20 || st.threads != 17 {
		t.Errorf("%+v, want rss 100 MiB, hwm 200 MiB, 17 threads", st)
	}
	if st := parseProcStatus([]byte("Name:\tx\n")); st != (procStatus{}) {
		t.Errorf("%+v from a status without the lines", st)
	}
}

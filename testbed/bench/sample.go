package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes is the first line of /proc/stat, in clock ticks: busy and in
// total, and two parts of busy. steal is time the hypervisor gave the
// machine's CPUs to someone else: busy for the lab, charged to none of its
// processes. irq is interrupt and softirq time, mostly the network stack
// carrying the lab's links (veth, bridge, tc): with tick-based accounting,
// as on the lab's kernel (no CONFIG_IRQ_TIME_ACCOUNTING), a tick taken in
// an interrupt counts here and also in the time of the process it
// interrupted, so irq is inside the processes' time, not beside it.
type cpuTimes struct{ busy, total, irq, steal uint64 }

// parseCPU reads the aggregate "cpu" line of a /proc/stat text. Idle and
// iowait count as not busy; steal counts as busy (the lab could not use
// it).
func parseCPU(stat string) (cpuTimes, error) {
	sc := bufio.NewScanner(strings.NewReader(stat))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[0] != "cpu" {
			continue
		}
		var t cpuTimes
		for i, s := range f[1:] {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("parse /proc/stat: %w", err)
			}
			// user nice system idle iowait irq softirq steal guest guest_nice;
			// guest time is already counted in user.
			if i >= 8 {
				break
			}
			t.total += v
			if i != 3 && i != 4 {
				t.busy += v
			}
			switch i {
			case 5, 6:
				t.irq += v
			case 7:
				t.steal += v
			}
		}
		return t, nil
	}
	return cpuTimes{}, fmt.Errorf("parse /proc/stat: no cpu line")
}

func readCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read cpu times: %w", err)
	}
	return parseCPU(string(b))
}

// share is the busy fraction between two readings.
func share(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.busy-a.busy) / float64(b.total-a.total)
}

// cpuMeter samples the machine's CPU once a second while a run goes on.
type cpuMeter struct {
	start cpuTimes
	// CPU-seconds from start to finish: the machine's busy time, and the
	// parts of it that were interrupts and stolen (see cpuTimes).
	busy, irq, steal float64
	peak             chan float64
	stop             context.CancelFunc
}

func startCPU(ctx context.Context) (*cpuMeter, error) {
	first, err := readCPU()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &cpuMeter{start: first, peak: make(chan float64, 1), stop: cancel}
	go func() {
		var peak float64
		prev := first
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				m.peak <- peak
				return
			case <-tick.C:
				if cur, err := readCPU(); err == nil {
					peak = max(peak, share(prev, cur))
					prev = cur
				}
			}
		}
	}()
	return m, nil
}

// finish stops sampling and returns the average and peak busy shares.
func (m *cpuMeter) finish() (avg, peak float64, err error) {
	m.stop()
	peak = <-m.peak
	end, err := readCPU()
	if err != nil {
		return 0, peak, err
	}
	secs := func(a, b uint64) float64 {
		if b <= a {
			return 0
		}
		return float64(b-a) / clockTicks
	}
	m.busy, m.irq, m.steal = secs(m.start.busy, end.busy), secs(m.start.irq, end.irq), secs(m.start.steal, end.steal)
	return share(m.start, end), peak, nil
}

// linkCounter reads the bytes a lab machine sent on its link: they arrive
// at its veth's outer end, in the default namespace, as received bytes.
type linkCounter struct{ path string }

func newLinkCounter(veth string) linkCounter {
	return linkCounter{path: "/sys/class/net/" + veth + "/statistics/rx_bytes"}
}

func (c linkCounter) read() (int64, error) {
	if c.path == "" {
		return 0, nil // no such link in this lab
	}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return 0, fmt.Errorf("read link counter: %w", err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read link counter %s: %w", c.path, err)
	}
	return v, nil
}

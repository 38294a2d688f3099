package orchestrator

import (
	"math"
	"testing"
)

// TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint replays the
// bench's measurements (docs/bench/results.csv: propagation_s at 200
// Mbit/s of every point measured in both modes) and checks that --mode
// auto picks the mode that was faster there.
func TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint(t *testing.T) {
	const mb = 1000 * 1000
	measured := []struct {
		hosts         int
		sizeMB        int64
		p2p, registry float64 // seconds
	}{
		{5, 10, 5.07, 5.81},
		{10, 10, 11.30, 9.96},
		{20, 10, 39.17, 15.23},
		{5, 50, 8.26, 13.36},
		{10, 50, 16.32, 26.59},
		{20, 50, 51.25, 49.13},
		{40, 50, 153.14, 98.38},
		{5, 130, 12.80, 30.16},
		{10, 130, 24.53, 60.23},
		{20, 130, 74.29, 118.52},
		{40, 130, 264.67, 234.16},
		{5, 250, 21.55, 55.37},
		{10, 250, 39.75, 110.71},
		{20, 250, 117.68, 219.13},
		{40, 250, 399.98, 435.49},
		{5, 500, 40.69, 108.76},
		{10, 500, 61.36, 215.83},
		{20, 500, 157.91, 426.02},
		{5, 1000, 87.20, 214.49},
		{10, 1000, 121.44, 425.44},
	}
	for _, m := range measured {
		want := ModeP2P
		if m.registry < m.p2p {
			want = ModeRegistry
		}
		if got := chooseMode(m.sizeMB*mb, m.hosts); got != want {
			t.Errorf("%d hosts, %d MB (P2P %.1f s, registry %.1f s): auto chose %s, want %s",
				m.hosts, m.sizeMB, m.p2p, m.registry, got, want)
		}
	}
}

func TestBalancePoint_OneHostAlwaysPullsAndSmallClustersShare(t *testing.T) {
	if got := chooseMode(10*1000*1000*1000, 1); got != ModeRegistry {
		t.Errorf("one host, 10 GB: %s, want registry (nobody to share with)", got)
	}
	if bp := balancePoint(1); bp != math.MaxInt64 {
		t.Errorf("balancePoint(1) = %d", bp)
	}
	for n := 2; n <= 6; n++ {
		if got := chooseMode(1, n); got != ModeP2P {
			t.Errorf("%d hosts: %s, want p2p at every size", n, got)
		}
	}
	for n := 8; n < 200; n++ {
		if balancePoint(n) <= balancePoint(n-1) {
			t.Errorf("balance point does not grow from %d to %d hosts", n-1, n)
		}
	}
}

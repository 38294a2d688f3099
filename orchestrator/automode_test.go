package orchestrator

import (
	"math"
	"testing"
)

// TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint replays the
// bench's measurements (docs/bench/results.csv: propagation_s of both
// modes at 200 Mbit/s) and checks that --mode auto picks the mode that was
// faster there.
func TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint(t *testing.T) {
	const mb = 1000 * 1000
	measured := []struct {
		hosts         int
		sizeMB        int64
		p2p, registry float64 // seconds
	}{
		{5, 10, 5.71, 6.65},
		{10, 10, 16.15, 10.60},
		{20, 10, 49.10, 20.08},
		{5, 50, 13.36, 16.56},
		{10, 50, 24.20, 34.27},
		{20, 50, 73.59, 51.45},
		{5, 130, 15.98, 32.31},
		{10, 130, 37.13, 63.01},
		{20, 130, 101.59, 124.08},
		{5, 250, 29.45, 63.16},
		{10, 250, 65.36, 114.62},
		{20, 250, 133.85, 225.73},
		{40, 10, 142.80, 50.55},
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

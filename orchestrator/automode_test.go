package orchestrator

import (
	"math"
	"testing"
)

// TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint replays the
// bench's measurements (docs/bench/e2e-200mbit.csv: propagation_s at 200
// Mbit/s, cold node caches, of every point measured in both modes) and
// checks that --mode auto picks the mode that was faster there.
func TestChooseMode_PicksTheFasterModeAtEveryMeasuredGridPoint(t *testing.T) {
	const mb = 1000 * 1000
	measured := []struct {
		hosts         int
		sizeMB        int64
		p2p, registry float64 // seconds
	}{
		{2, 10, 2.2, 1.8},
		{5, 10, 5.3, 3.2},
		{10, 10, 5.6, 5.5},
		{2, 250, 13.1, 22.2},
		{5, 250, 18.2, 53.6},
		{10, 250, 72.8, 106.4},
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

func TestBalancePoint_OneHostAlwaysPullsAndLargeClustersShareSmallImages(t *testing.T) {
	if got := chooseMode(10*1000*1000*1000, 1); got != ModeRegistry {
		t.Errorf("one host, 10 GB: %s, want registry (nobody to share with)", got)
	}
	if bp := balancePoint(1); bp != math.MaxInt64 {
		t.Errorf("balancePoint(1) = %d", bp)
	}
	// The registry's time grows with n × size: beyond the measured
	// points the balance point falls, and at 100 hosts a 2 MB image is
	// shared.
	for n := 11; n < 1000; n++ {
		if balancePoint(n) >= balancePoint(n-1) {
			t.Errorf("balance point does not fall from %d to %d hosts", n-1, n)
		}
	}
	if got := chooseMode(2*1000*1000, 100); got != ModeP2P {
		t.Errorf("100 hosts, 2 MB: %s, want p2p", got)
	}
}

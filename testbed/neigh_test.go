package testbed

import "testing"

func TestNeighLimitsFor_CoverEveryMachineResolvingEveryOther(t *testing.T) {
	def := neighLimits{128, 512, 1024}
	for _, tc := range []struct {
		machines int
		cur      neighLimits
		want     neighLimits
	}{
		{machines: 10, cur: def, want: def},                          // 200 entries: the defaults hold
		{machines: 42, cur: def, want: neighLimits{882, 3528, 7056}}, // 40 hosts, bastion, registry
		{machines: 5, cur: neighLimits{4096, 8192, 16384}, want: neighLimits{4096, 8192, 16384}},
	} {
		got := neighLimitsFor(tc.machines, tc.cur)
		if got != tc.want {
			t.Errorf("neighLimitsFor(%d, %v) = %v, want %v", tc.machines, tc.cur, got, tc.want)
		}
		if got[0] > got[1] || got[1] > got[2] {
			t.Errorf("neighLimitsFor(%d, %v) = %v: not ordered", tc.machines, tc.cur, got)
		}
		if n := tc.machines * tc.machines; got[1] < n {
			t.Errorf("neighLimitsFor(%d) soft limit %d < %d entries", tc.machines, got[1], n)
		}
	}
}

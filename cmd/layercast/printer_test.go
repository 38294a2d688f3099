package main

import (
	"strings"
	"testing"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/seed"
)

func TestTraffic_SaysWhatTheSeederSentAgainAndWhy(t *testing.T) {
	rep := &orchestrator.Report{Size: 100e6, Missing: 100e6, Egress: 130e6,
		Resent: seed.Resends{Rescue: 10e6, IdleOwner: 20e6}}
	got := traffic(rep)
	for _, want := range []string{"1.30× the layers the hosts lacked", "30 MB of it again", "10 MB to hosts their peers did not serve", "20 MB of pieces a host went quiet on"} {
		if !strings.Contains(got, want) {
			t.Errorf("traffic %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "not passed on") || strings.Contains(got, "hung up") || strings.Contains(got, "asked for again") {
		t.Errorf("traffic %q names causes that sent nothing", got)
	}
	rep.Resent = seed.Resends{}
	if got := traffic(rep); strings.Contains(got, "again") || strings.Contains(got, "torrents") {
		t.Errorf("nothing sent twice and no torrents handed out, yet traffic says %q", got)
	}
	rep.Torrents = orchestrator.TorrentsReport{FromBastion: 1, FromPeers: 39, BastionBytes: 26e3}
	if got, want := traffic(rep), "torrents: 1 from the bastion (26 kB), 39 from other hosts"; !strings.Contains(got, want) {
		t.Errorf("traffic %q lacks %q", got, want)
	}
}

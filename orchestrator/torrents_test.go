package orchestrator

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// torrentsNode plays a node whose spec left the torrents out: it serves
// its binary, waits for the bastion's ControlTorrents lines (sent on got,
// by host), answers that it has the torrents and serves them, or, when
// cannotFetch, that the host named did not serve them; then it plays a
// node that got the image.
func torrentsNode(t *testing.T, got chan<- hostControl, cannotFetch bool) func(context.Context, openssh.Command, *openssh.FakeProcess) {
	return func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		if cannotFetch {
			// Likely after another host, so that it is sent to one.
			time.Sleep(100 * time.Millisecond)
		}
		dec, emit, spec, ok := startFakeNode(t, p)
		if !ok {
			return
		}
		addr := net.JoinHostPort(spec.PublicIP, "4040")
		emit(jobspec.Event{Kind: jobspec.EventServing, Addr: addr})
		if len(spec.Layers[0].Torrent) > 0 {
			// The first host's spec carries them.
			got <- hostControl{spec.Host, jobspec.Control{}, true}
			emit(jobspec.Event{Kind: jobspec.EventTorrents, Addr: addr})
		}
		for len(spec.Layers[0].Torrent) == 0 {
			var c jobspec.Control
			if err := dec.Decode(&c); err != nil {
				t.Errorf("%s: no torrents line: %v", spec.Host, err)
				p.Exit(err)
				return
			}
			if c.Kind != jobspec.ControlTorrents {
				continue
			}
			got <- hostControl{spec.Host, c, false}
			if len(c.Torrents) == 0 && cannotFetch {
				emit(jobspec.Event{Kind: jobspec.EventNeedTorrents, Message: "connection refused"})
				continue
			}
			emit(jobspec.Event{Kind: jobspec.EventTorrents, Addr: addr})
			break
		}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		importAndSeed(dec, emit, p, spec.ImageID)
	}
}

// hostControl is a ControlTorrents line a host got, or its spec with the
// torrents in it (inSpec).
type hostControl struct {
	host   string
	c      jobspec.Control
	inSpec bool
}

func TestFleet_TheTorrentsCrossTheBastionsLinkOnceAndHostsHandThemOn(t *testing.T) {
	hosts := []string{"h1", "h2", "h3", "h4", "h5", "h6"}
	l := newTestLab(t, hosts...)
	got := make(chan hostControl, 3*len(hosts))
	for _, h := range hosts {
		l.play(h, torrentsNode(t, got, h == "h6"))
	}
	rep, _, err := l.run(t, context.Background(), Options{BastionAddr: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range rep.Hosts {
		if h.State != HostDone {
			t.Errorf("%s: %s %s", h.Host, h.State, h.Error)
		}
	}
	close(got)
	fromBastion, fromPeers, inSpec := map[string]int{}, 0, 0
	var h6 []jobspec.Control
	for hc := range got {
		if hc.inSpec {
			inSpec++
			fromBastion[hc.host]++
			continue
		}
		if hc.host == "h6" {
			h6 = append(h6, hc.c)
		}
		if len(hc.c.Torrents) > 0 {
			fromBastion[hc.host]++
			if len(hc.c.Torrents) != 2 || len(hc.c.Torrents[0].Torrent) == 0 {
				t.Errorf("%s: the bastion's torrents line holds %d torrents", hc.host, len(hc.c.Torrents))
			}
			continue
		}
		fromPeers++
		if len(hc.c.From) != 1 || !strings.Contains(hc.c.From[0], ":4040/"+jobspec.TorrentsName(l.docker.ID)) {
			t.Errorf("%s: sent to %q; want one host's torrents URL", hc.host, hc.c.From)
		}
	}
	// The bastion sent them to the first host only, in its spec, and to h6
	// after the host it was sent to did not serve it (unless h6 was the
	// first).
	if inSpec != 1 {
		t.Errorf("%d specs carried the torrents, want the first host's only", inSpec)
	}
	if len(h6) > 0 && (len(h6) != 2 || len(h6[0].From) != 1 || len(h6[1].Torrents) == 0) {
		t.Fatalf("h6 got %d lines; want another host's URL, then the bastion's torrents", len(h6))
	}
	if n := len(fromBastion); n != 1+len(h6)/2 || fromBastion["h6"] != 1 {
		t.Errorf("the bastion sent the torrents to %v; want the first host, and h6 when it was not", fromBastion)
	}
	if want := len(hosts) - 1; fromPeers != want {
		t.Errorf("%d hosts were sent to another host, want %d", fromPeers, want)
	}
	if r := rep.Torrents; r.FromBastion != len(fromBastion) || r.FromPeers != len(hosts)-len(fromBastion) || r.BastionBytes <= 0 {
		t.Errorf("report %+v; want %d hosts from the bastion, the others from peers", r, len(fromBastion))
	}
}

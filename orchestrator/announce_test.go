package orchestrator

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	"github.com/anacrolix/torrent/metainfo"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// announcingNode is a fake node that, before it reports anything, announces
// every layer of its spec to the job's tracker as a node starting to
// download would, then announces the first layer again and sends the
// interval that answer handed it (0, and the test fails, on an error),
// from the host's address hostAddr. Then it
// plays a node that got the image.
func announcingNode(t *testing.T, hostAddr string, intervals chan<- time.Duration) func(context.Context, openssh.Command, *openssh.FakeProcess) {
	return func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
		dec, emit, spec, ok := startFakeNode(t, p)
		if !ok {
			return
		}
		var interval time.Duration
		var err error
		for i := range len(spec.Layers) + 1 {
			l := spec.Layers[i%len(spec.Layers)]
			if interval, err = announce(ctx, hostAddr, spec.Announce, l.InfoHash, l.Size); err != nil {
				break
			}
		}
		if err != nil {
			t.Errorf("fake node: %v", err)
		}
		intervals <- interval
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		importAndSeed(dec, emit, p, spec.ImageID)
	}
}

// announce sends one "started" announce for the torrent with infohash
// infoHash (hex) to the tracker at announceURL from hostAddr, and returns
// the interval it answered.
func announce(ctx context.Context, hostAddr, announceURL, infoHash string, left int64) (time.Duration, error) {
	var ih metainfo.Hash
	if err := ih.FromHexString(infoHash); err != nil {
		return 0, fmt.Errorf("infohash: %w", err)
	}
	q := url.Values{}
	q.Set("info_hash", string(ih[:]))
	q.Set("peer_id", "-LC0000-announcetest")
	q.Set("port", "6881")
	q.Set("left", fmt.Sprint(left))
	q.Set("event", "started")
	q.Set("compact", "1")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, announceURL+"?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	// From h1's address: the tracker admits only the job's hosts.
	from := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(hostAddr)}}
	client := &http.Client{Transport: &http.Transport{DialContext: from.DialContext}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("announce: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	var answer struct {
		Failure  string `bencode:"failure reason"`
		Interval int64  `bencode:"interval"`
	}
	if err := bencode.Unmarshal(body, &answer); err != nil {
		return 0, fmt.Errorf("decode answer %q: %w", body, err)
	}
	if answer.Failure != "" {
		return 0, fmt.Errorf("tracker refused: %s", answer.Failure)
	}
	return time.Duration(answer.Interval) * time.Second, nil
}

func TestEngine_MaxRateSlowsTheTrackersAnnouncesToo(t *testing.T) {
	// The lab's image has two layers, so the node is listed twice when it
	// announces the first one again: at one announce a second (a cap of
	// 1.1 kB/s, whose twentieth is two answers) the interval is 2 s; without
	// a cap it is the 1 s of small jobs.
	for maxRate, want := range map[int64]time.Duration{0: time.Second, 1100: 2 * time.Second} {
		l := newTestLab(t, "h1")
		intervals := make(chan time.Duration, 1)
		l.play("h1", announcingNode(t, "127.0.0.2", intervals)) // h1's inventory address
		rep, _, err := l.run(t, context.Background(), Options{BastionAddr: "localhost", MaxRate: maxRate})
		if err != nil {
			t.Fatal(err)
		}
		if h := rep.Hosts[0]; h.State != HostDone {
			t.Errorf("--max-rate %d B/s: %+v", maxRate, h)
		}
		if got := <-intervals; got != want {
			t.Errorf("--max-rate %d B/s: the tracker handed an interval of %v, want %v", maxRate, got, want)
		}
	}
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/swarm"
)

// torrentFetchTimeout bounds one fetch of the torrents from another host.
const torrentFetchTimeout = 5 * time.Second

// torrentsStep gets the layers' torrents (their piece hashes) when the
// spec left them out, so that they cross the bastion's link for a few
// hosts only: it waits for a ControlTorrents line, which names hosts that
// serve them or carries them, checks each torrent against the layer's
// InfoHash, and from then on serves them to the job's other hosts beside
// the node binary. It runs beside the daemon's checks; the swarm step
// waits for it (await).
type torrentsStep struct {
	j *job
	// controls are the job's ControlTorrents lines (watchControl).
	controls <-chan jobspec.Control
	stop     context.CancelFunc
	done     chan struct{}
	// got holds the torrents by digest once done is closed and err is nil.
	got map[string][]byte
	err error
}

func (s *torrentsStep) Title() string { return "get the layers' torrents" }

func (s *torrentsStep) Run(ctx context.Context) error {
	ctx, s.stop = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.got, s.err = s.fetch(ctx)
		if s.err == nil {
			s.serve()
		}
	}()
	return nil
}

func (s *torrentsStep) Cleanup(context.Context) error {
	s.stop()
	<-s.done
	return nil
}

// await waits for the torrents and puts them into the spec's layers.
func (s *torrentsStep) await(ctx context.Context) error {
	select {
	case <-s.done:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if s.err != nil {
		return s.err
	}
	for i := range s.j.spec.Layers {
		l := &s.j.spec.Layers[i]
		if len(l.Torrent) == 0 {
			l.Torrent = s.got[l.Digest]
		}
	}
	return nil
}

// fetch returns every layer's torrent by digest: the spec's, and for the
// layers it left out what a ControlTorrents line leads to.
func (s *torrentsStep) fetch(ctx context.Context) (map[string][]byte, error) {
	got := map[string][]byte{}
	for _, l := range s.j.spec.Layers {
		if len(l.Torrent) > 0 {
			got[l.Digest] = l.Torrent
		}
	}
	if len(got) == len(s.j.spec.Layers) {
		return got, nil
	}
	for {
		var c jobspec.Control
		select {
		case c = <-s.controls:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		if len(c.Torrents) > 0 {
			// From the bastion: a torrent that does not match is a bad spec.
			if err := s.take(got, c.Torrents); err != nil {
				return nil, fmt.Errorf("%w: torrents from the bastion: %w", ErrBadSpec, err)
			}
			return got, nil
		}
		var why []string
		for _, u := range c.From {
			ts, err := s.get(ctx, u)
			if err == nil {
				err = s.take(got, ts)
			}
			if err == nil {
				s.j.log.Debug("torrents fetched", "from", u)
				return got, nil
			}
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			why = append(why, fmt.Sprintf("%s: %v", u, err))
		}
		if len(c.From) == 0 {
			why = append(why, "no host named")
		}
		s.j.log.Warn("no host served the torrents", "why", why)
		s.j.ev.emit(jobspec.Event{Kind: jobspec.EventNeedTorrents, Message: strings.Join(why, "; ")})
	}
}

// take checks ts against the spec's layers and adds the torrents got
// lacks; on a mismatch it adds none.
func (s *torrentsStep) take(got map[string][]byte, ts []jobspec.LayerTorrent) error {
	byDigest := make(map[string][]byte, len(ts))
	for _, t := range ts {
		byDigest[t.Digest] = t.Torrent
	}
	add := map[string][]byte{}
	for _, l := range s.j.spec.Layers {
		if _, ok := got[l.Digest]; ok {
			continue
		}
		t, ok := byDigest[l.Digest]
		if !ok {
			return fmt.Errorf("layer %s: no torrent", l.Digest)
		}
		ih, err := swarm.InfoHashOf(t)
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		if ih != l.InfoHash {
			return fmt.Errorf("layer %s: torrent's infohash %s, want %s", l.Digest, ih, l.InfoHash)
		}
		add[l.Digest] = t
	}
	for d, t := range add {
		got[d] = t
	}
	return nil
}

// get fetches the torrents another host serves at url.
func (s *torrentsStep) get(ctx context.Context, url string) ([]jobspec.LayerTorrent, error) {
	ctx, cancel := context.WithTimeout(ctx, torrentFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	// Straight to the host: a proxy in the node's environment is for the
	// outside world, not for the job's hosts.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jobspec.MaxLine+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(body) > jobspec.MaxLine {
		return nil, errors.New("more than a spec line's worth of torrents")
	}
	var ts []jobspec.LayerTorrent
	if err := json.Unmarshal(body, &ts); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return ts, nil
}

// serve hands the torrents on beside the node binary, when this node
// serves it, and tells the bastion they are here.
func (s *torrentsStep) serve() {
	ev := jobspec.Event{Kind: jobspec.EventTorrents}
	if srv := s.j.handoff; srv != nil {
		ts := make([]jobspec.LayerTorrent, 0, len(s.j.spec.Layers))
		for _, l := range s.j.spec.Layers {
			ts = append(ts, jobspec.LayerTorrent{Digest: l.Digest, Torrent: s.got[l.Digest]})
		}
		body, err := json.Marshal(ts)
		if err == nil {
			err = srv.ServeBytes(jobspec.TorrentsName(s.j.spec.ImageID), body)
		}
		if err != nil {
			s.j.log.Warn("cannot hand the torrents on", "err", err)
		} else {
			port := srv.Addr().(*net.TCPAddr).Port
			ev.Addr = net.JoinHostPort(s.j.spec.PublicIP, strconv.Itoa(port))
		}
	}
	s.j.ev.emit(ev)
}

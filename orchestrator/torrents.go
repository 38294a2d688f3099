package orchestrator

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// newTorrentSources decides where each host gets the layers' torrents (the
// piece hashes, 27 bytes of the spec per piece: 26 KB for 250 MB) from, the
// way the node binary is handed on: the bastion sends them to the first
// host, and every node that has them serves them beside the binary. At 40
// hosts × 250 MB on a 3 Mbit/s bastion the specs with the torrents in them
// took 3.3 s of the bastion's link at the job's start, the most of the
// hosts' setup (docs/SCALE.md). The wait for a peer is short: a host that
// waits more than a few seconds for 26 KB has waited longer than the
// bastion's link takes to send them.
func newTorrentSources() *binSources {
	b := newBinSources()
	b.firstUploads, b.perPeer, b.minWait = 1, 2, 2*time.Second
	return b
}

// torrentsKey is what the torrent sources know an image's torrents by.
func torrentsKey(imageID string) string { return "torrents:" + imageID }

// torrentsHandout is one host's source of the torrents in flight: given
// to its node, not yet answered. The node's answer settles it at once, in
// the goroutine that reads the node's events, so that the job's report,
// made after every node's events ended, counts it.
type torrentsHandout struct {
	sources   *binSources
	key, host string

	mu    sync.Mutex
	src   *binSource // in flight; nil when none
	size  int
	start time.Time
	// answers has the node's answers: it has the torrents (true), or the
	// host named did not serve them.
	answers chan bool
}

func newTorrentsHandout(sources *binSources, imageID, host string) *torrentsHandout {
	return &torrentsHandout{sources: sources, key: torrentsKey(imageID), host: host, answers: make(chan bool, 1)}
}

// begin records src as given to the node, with size bytes of torrents in
// the bastion's line or spec.
func (h *torrentsHandout) begin(src binSource, size int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.src, h.size, h.start = &src, size, time.Now()
}

// settle hands the source in flight back, as having served (ok) or not;
// it reports whether one was in flight.
func (h *torrentsHandout) settle(ok bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.src == nil {
		return false
	}
	h.sources.done(*h.src, h.key, h.host, ok, int64(h.size), time.Since(h.start))
	h.src = nil
	return true
}

// answer is the node's answer: EventTorrents (ok) or EventNeedTorrents.
func (h *torrentsHandout) answer(ok bool) {
	if h.settle(ok) {
		select {
		case h.answers <- ok:
		default:
		}
	}
}

// inSpec puts the torrents into spec when the torrent sources give this
// host the bastion's first send at once: then they travel with the spec,
// which at a job's start goes out before the other hosts' specs fill the
// bastion's link, rather than in a line behind them. It reports whether it
// did.
func (s startStep) inSpec(spec *jobspec.Spec, h *torrentsHandout) bool {
	src, ok := s.torrents.tryFirst(h.key)
	if !ok {
		return false
	}
	size := 0
	for i := range spec.Layers {
		l := &spec.Layers[i]
		l.Torrent = s.j.served.torrents[l.Digest]
		size += len(l.Torrent)
	}
	h.begin(src, size)
	return true
}

// giveTorrents sends hr's node, whose spec left the torrents out, a
// ControlTorrents line naming a host that serves them, or the torrents
// themselves when no host does (sources decides), until the node answers
// that it has them; when its spec carried them (inSpec) it waits for that
// answer first. A node that could not fetch them from the host named gets
// them from the bastion: a host that cannot reach its peers would
// otherwise mark every one of them bad in turn.
func (s startStep) giveTorrents(ctx context.Context, hr *hostRun, h *torrentsHandout, inSpec bool) {
	defer h.settle(false) // the node exited or the job ended unanswered
	for tries := 0; ; tries++ {
		fromBastion := inSpec && tries == 0
		if !fromBastion {
			src, err := s.torrents.get(ctx, h.key, tries == 0, tries)
			if err != nil {
				return
			}
			c := jobspec.Control{Kind: jobspec.ControlTorrents}
			size := 0
			if src.peer != nil {
				c.From = []string{src.peer.url}
			} else {
				fromBastion = true
				for _, l := range hr.image.Layers {
					t := s.j.served.torrents[l.Digest]
					c.Torrents = append(c.Torrents, jobspec.LayerTorrent{Digest: l.Digest, Torrent: t})
					size += len(t)
				}
			}
			h.begin(src, size)
			if err := hr.node.send(c); err != nil {
				return
			}
		}
		var ok bool
		select {
		case ok = <-h.answers:
		case <-hr.node.exited:
			return
		case <-ctx.Done():
			return
		}
		if ok || fromBastion {
			// Done; or the node refused the bastion's own torrents (it
			// fails and says why).
			return
		}
		hr.log.Debug("torrents from another host failed; asking again")
	}
}

// peerURL is the URL of name on the server a node runs at addr (host:port,
// the host possibly empty: serverIP then), or "" when addr is not an IP
// and a port: other hosts fetch from there.
func peerURL(addr, serverIP, name string) string {
	h, p, err := net.SplitHostPort(addr)
	if h == "" {
		h = serverIP
	}
	if _, perr := strconv.ParseUint(p, 10, 16); err != nil || perr != nil || net.ParseIP(h) == nil {
		return ""
	}
	return "http://" + net.JoinHostPort(h, p) + "/" + name
}

package orchestrator

import (
	"context"
	"net"
	"strconv"
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

// torrentsAnswer is a node's answer to a ControlTorrents line: it has the
// torrents (ok), or no host it was sent to served them.
type torrentsAnswer struct {
	ok  bool
	why string
}

// inSpec puts the torrents into spec when the torrent sources give this
// host the bastion's first send at once: then they travel with the spec,
// which at a job's start goes out before the other hosts' specs fill the
// bastion's link, rather than in a line behind them. It returns the
// source taken and the torrents' bytes, or nil.
func (s startStep) inSpec(spec *jobspec.Spec, hr *hostRun) (*binSource, int) {
	src, ok := s.torrents.tryFirst(torrentsKey(hr.image.ID))
	if !ok {
		return nil, 0
	}
	size := 0
	for i := range spec.Layers {
		l := &spec.Layers[i]
		l.Torrent = s.j.served.torrents[l.Digest]
		size += len(l.Torrent)
	}
	return &src, size
}

// giveTorrents sends hr's node, whose spec left the torrents out, a
// ControlTorrents line naming a host that serves them, or the torrents
// themselves when no host does (sources decides), until the node answers
// that it has them; when the spec carried them (first, from inSpec) it
// waits for that answer first. A node that could not fetch them from the
// host named gets them from the bastion: a host that cannot reach its
// peers would otherwise mark every one of them bad in turn. The node's
// answers arrive on answers.
func (s startStep) giveTorrents(ctx context.Context, hr *hostRun, answers <-chan torrentsAnswer, first *binSource, firstSize int) {
	key, host := torrentsKey(hr.image.ID), hr.host.Name
	for tries := 0; ; tries++ {
		var src binSource
		size, start := 0, time.Now()
		if tries == 0 && first != nil {
			src, size = *first, firstSize
		} else {
			var err error
			if src, err = s.torrents.get(ctx, key, tries == 0, tries); err != nil {
				return
			}
			c := jobspec.Control{Kind: jobspec.ControlTorrents}
			if src.peer != nil {
				c.From = []string{src.peer.url}
			} else {
				for _, l := range hr.image.Layers {
					t := s.j.served.torrents[l.Digest]
					c.Torrents = append(c.Torrents, jobspec.LayerTorrent{Digest: l.Digest, Torrent: t})
					size += len(t)
				}
			}
			if err := hr.node.send(c); err != nil {
				s.torrents.done(src, key, host, false, 0, 0)
				return
			}
		}
		var a torrentsAnswer
		answered := false
		select {
		case a = <-answers:
			answered = true
		case <-hr.node.exited:
		case <-ctx.Done():
		}
		if !answered {
			// The node may have answered just before it exited.
			select {
			case a = <-answers:
				answered = true
			default:
			}
		}
		s.torrents.done(src, key, host, a.ok, int64(size), time.Since(start))
		if !answered || a.ok || src.peer == nil {
			// Done; or the node exited, the job ended, or the node
			// refused the bastion's own torrents (it fails and says why).
			return
		}
		hr.log.Debug("torrents from another host failed", "from", src.peer.host, "why", a.why)
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

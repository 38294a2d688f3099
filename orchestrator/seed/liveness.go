package seed

import "time"

// A peer whose link went down (a cut cable, a host that froze) keeps its
// TCP connection open on the bastion for as long as the kernel retransmits,
// about 15 minutes, and a block the seeder is sending it never completes.
// Meanwhile the policy still counts it: it owns the pieces it was being
// sent, so every other host's request for them is held, and the pieces it
// alone reported wait for the spread limit. The seeder therefore drops a
// connection whose writer has been sending one block for deadAfter while
// the peer acknowledged nothing in that time. A healthy peer acknowledges
// within a round trip even on a saturated link; one dropped by mistake
// dials the seeder again (the node redials its seeders) and loses only the
// pieces it owned.
const (
	deadAfter     = 5 * time.Second
	livenessEvery = time.Second
)

// dropUnreachable closes every connection whose peer has stopped
// acknowledging what the seeder sends it (see deadAfter).
func (s *Seeder) dropUnreachable(now time.Time) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		silent, ok := c.unacknowledgedFor(now)
		if !ok || silent < deadAfter {
			continue
		}
		c.log.Info("seeder drops a peer that acknowledges nothing (its link is down?)", "layer", c.t.layer.infoHash.HexString(), "silent", silent.Round(100*time.Millisecond))
		c.mu.Lock()
		c.unreachable = true
		c.mu.Unlock()
		c.close()
	}
}

// unacknowledgedFor reports how long c's writer has been sending one block
// without the peer acknowledging anything; false when it is not sending or
// the system cannot tell.
func (c *conn) unacknowledgedFor(now time.Time) (time.Duration, bool) {
	c.mu.Lock()
	sending, since := c.state == writerSending, c.sendingSince
	c.mu.Unlock()
	if !sending {
		return 0, false
	}
	noAck, ok := sinceLastAck(c.nc)
	if !ok {
		return 0, false
	}
	return min(noAck, now.Sub(since)), true
}

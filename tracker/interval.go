package tracker

import "time"

// The announce interval, when Config.Interval is zero, keeps the whole
// tracker's steady load near a fixed rate of announces whatever the fleet
// size, while small jobs keep the 1 s the DID article found best.
//
// Every node announces each of the job's torrents (one per layer) once per
// interval it was handed, so with L leechers and S seeds listed over all
// torrents the tracker answers L/I + S/(F·I) announces per second, where I
// is the leechers' interval and F·I the seeds' (F = SeedIntervalFactor).
// Holding that at or under the target rate R gives
//
//	I = ceil((L + S/F) / R), at least 1 s, at most MaxAutoInterval.
//
// R defaults to DefaultAnnounceRate, 1,000 announces/s: the load of the
// article's own setting (100 nodes, 1 s) with a 10-layer image. The
// interval stays 1 s up to 1,000 (node, layer) pairs still downloading —
// 100 hosts with 10 layers, 1,000 hosts with one — and grows linearly
// beyond: 200 hosts × 10 layers get 2 s, 1,000 × 10 get 10 s, and as hosts
// finish the stragglers' interval shrinks again. anacrolix (v1.61) opens a
// new connection for every announce (its tracker client disables
// keep-alive), so one announce costs the bastion an accept, a request and
// a close: about 100 µs of CPU measured on loopback, more under --tunnel
// where each one is also an SSH channel. 1,000 a second is a tenth of one
// core, and the rest stays with the seeder and the SSH fan-out.
//
// A seed needs no peers: others find it, and it is listed first. It
// announces only to stay listed, so it gets F times the interval (and a
// peer's TTL is 3× the interval it was handed). A finished peer's tracker
// load is therefore a quarter of a downloading one's.
//
// What a longer interval costs a node: nothing when it joins, since its
// first announce ("started") is answered at once with up to numwant peers,
// finished ones first; a node finishing a layer announces "completed" at
// once, so the tracker lists it first without delay. What waits for the
// next announce: a node whose peers die or finish learns of new peers only
// then (it keeps the bastion's seeder, which it is given directly, and
// anacrolix v1.61 does not announce early when it runs short), and others
// learn of a new seed only then. A peer that dies without "stopped" stays
// listed for up to 3 intervals (12 for a seed), costing others a failed
// dial each. Beyond 60 s × R weighted pairs (60,000 at the default rate,
// e.g. 6,000 hosts × 10 layers) the interval stops growing at
// MaxAutoInterval and the load exceeds R in proportion: a node should not
// wait more than a minute for fresh peers (anacrolix waits as long after a
// failed announce).
const (
	// DefaultAnnounceRate is the tracker-wide target of announces per
	// second that the automatic interval holds the load to.
	DefaultAnnounceRate = 1000
	// SeedIntervalFactor multiplies the interval of peers that finished.
	SeedIntervalFactor = 4
	// MaxAutoInterval caps the automatic interval of downloading peers.
	MaxAutoInterval = time.Minute
)

// autoInterval is the downloading peers' interval for leechers and seeds
// listed over all torrents and a target rate of announces per second.
func autoInterval(leechers, seeds int64, rate int) time.Duration {
	weighted := leechers*SeedIntervalFactor + seeds // (L + S/F) · F
	perSecond := int64(rate) * SeedIntervalFactor   // R · F
	secs := (weighted + perSecond - 1) / perSecond
	return min(max(time.Duration(secs)*time.Second, time.Second), MaxAutoInterval)
}

// wholeSeconds rounds d to the protocol's unit, at least 1 s.
func wholeSeconds(d time.Duration) time.Duration {
	return max(d.Round(time.Second), time.Second)
}

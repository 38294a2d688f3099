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
// R defaults to DefaultAnnounceRate, 100 announces/s, set by the bytes
// announces put on the bastion's link rather than by its CPU. An announce
// is about 450 bytes on the wire to the bastion and 170 back (with no
// peers asked for; 50 peers add 300; 230 back before the answer lost its
// Date and Content-Type headers). At the earlier 1,000 a second, 100
// hosts × 5 layers announced every second, and on 2 Mbit/s links the
// tracker's answers took half the bastion's link in the job's first 100 s
// (11.9 MB of 23.7; the seeder had sent 2 MB). At 100 a second they are
// 45 kB/s in and 17 kB/s out: 7 % of a 2 Mbit/s link, 1 % of 20
// Mbit/s. The interval stays 1 s up to 100 (node, layer) pairs still
// downloading — 20 hosts with 5 layers — and grows linearly beyond: 40
// hosts × 5 layers get 2 s, 100 × 5 get 5 s, and as hosts finish the
// stragglers' interval shrinks again. One announce costs the bastion
// about 100 µs of CPU (BenchmarkAnnounceOverTCP), so CPU is no limit.
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
// dial each. Beyond 60 s × R weighted pairs (6,000 at the default rate,
// e.g. 600 hosts × 10 layers) the interval stops growing at
// MaxAutoInterval and the load exceeds R in proportion: a node should not
// wait more than a minute for fresh peers (anacrolix waits as long after a
// failed announce).
const (
	// DefaultAnnounceRate is the tracker-wide target of announces per
	// second that the automatic interval holds the load to.
	DefaultAnnounceRate = 100
	// SeedIntervalFactor multiplies the interval of peers that finished.
	SeedIntervalFactor = 4
	// MaxAutoInterval caps the automatic interval of downloading peers.
	MaxAutoInterval = time.Minute
)

// AnswerBytes is about what one announce's answer puts on the tracker's
// uplink: 170 bytes of answer, TCP/IP framing included, and 300 for the 50
// peers a node asks for.
const AnswerBytes = 470

// uplinkShare is the part of a capped uplink the tracker's answers may
// take at their target rate: a twentieth, 5 %.
const uplinkShare = 20

// AnnounceRateFor is the target rate of announces per second (for
// Config.AnnounceRate) at which the answers take about a twentieth of an
// uplink capped at bytesPerSecond, and at most DefaultAnnounceRate; zero
// for no cap (the default rate). The cap the operator gives the bastion's
// upload (--max-rate) bounds the seeder; without this the tracker's
// answers came on top of it at DefaultAnnounceRate: up to 55 kB/s (50
// peers in every answer), more than half of a 700 kbit/s cap, and 8–19
// kB/s of tracker traffic measured on the 200-host lab (docs/SCALE.md). At 700
// kbit/s the rate is 9 a second, so 200 hosts × 5 layers announce every
// 60 s (MaxAutoInterval) while they download, every 28 s at 50 hosts.
func AnnounceRateFor(bytesPerSecond int64) int {
	if bytesPerSecond <= 0 {
		return 0
	}
	return int(min(max(bytesPerSecond/uplinkShare/AnswerBytes, 1), DefaultAnnounceRate))
}

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

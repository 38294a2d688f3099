package swarm

import (
	"log/slog"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// chunkSize is the request (block) size, jobspec.ChunkSize. The nodes are
// anacrolix clients, which serve requests of any size up to
// MaxAllocPeerRequestDataPerConn (and, when an upload rate limit is set, its
// burst); the bastion's seeder takes requests of up to twice it. A request is one message, one
// receive, one storage write and one request-strategy update, so the
// node's per-byte work falls with the block size: 16 → 64 KiB cut the
// loopback cost from 6.2 to 5.1 CPU-s per GiB (BenchmarkDownload1GiB); in
// a 10-node swarm 64 KiB → 256 KiB cut it from 9.7 to 7.0 CPU-s per GB
// (BenchmarkSwarm) and each host finished sooner. A layer's pieces are
// 256 KiB to 4 MiB (the bastion's AutoPieceLength), so a block is never
// larger than its piece, and the receiving side's message limit (4 blocks,
// anacrolix) leaves room.
const chunkSize = jobspec.ChunkSize

// maxPeerRequestData bounds the piece data buffered per connection for
// requests a peer made: 16 blocks in flight.
const maxPeerRequestData = 4 << 20

// Connection limits per torrent. Every connection costs the node work for
// every piece anyone completes (have messages, request updates, its own
// reader and writer) and, on a paced link, every peer sending at once
// splits the node's receive rate into more streams that each wake it for a
// few packets: the kernel's per-wakeup work, not the bytes, then dominates.
// A layer's pieces still spread through a swarm in which each node talks to
// three peers and the seeder.
//
// Measured: lab, 10 hosts × 250 MB at 40 Mbit/s, node CPU 57–74 CPU-s at 12
// connections, 41 at 6, 27 at 4, the hosts done as fast (97 s). In-process
// (BenchmarkSwarm) 10 nodes × 150 MB: 5.6 CPU-s per GB at 12, 4.1 at 4;
// 100 nodes × 10 MB: anacrolix's default of 50 took 104 s at 98 CPU-s per
// GB, 12 took 9 s at 10, 4 took 4 s at 6.5 with half the bastion egress.
const (
	maxConnsPerTorrent      = 4
	halfOpenConnsPerTorrent = 4
)

// clientConfig is the anacrolix configuration for a job's swarm: TCP only,
// on the node's own listener and dialer (peerListener, peerDialer; the
// client's built-in ones are off), no DHT/PEX/uPnP/webseeds (peers come
// from the job's tracker and the seeder), no header obfuscation (RC4 costs
// CPU and the network is the operator's own), IPv4 only (the tracker hands
// out compact IPv4 peers).
func clientConfig(logger *slog.Logger, store *fileStorage) *torrent.ClientConfig {
	cc := torrent.NewDefaultClientConfig()
	cc.Slogger = logger
	cc.DefaultStorage = store
	cc.Seed = true
	cc.NoDHT = true
	cc.DhtStartingNodes = nil
	cc.PeriodicallyAnnounceTorrentsToDht = false
	cc.DisablePEX = true
	cc.DisableUTP = true
	cc.DisableTCP = true
	cc.DisableIPv6 = true
	cc.NoDefaultPortForwarding = true
	cc.DisableWebtorrent = true
	cc.DisableWebseeds = true
	// Plain headers only: anacrolix otherwise redials every connection
	// whose plain handshake failed (a duplicate, a peer at its limit) with
	// an encrypted one, a Diffie-Hellman exchange each.
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: true}
	cc.MaxAllocPeerRequestDataPerConn = maxPeerRequestData
	cc.DialRateLimiter = rate.NewLimiter(100, 100)
	cc.EstablishedConnsPerTorrent = maxConnsPerTorrent
	cc.HalfOpenConnsPerTorrent = halfOpenConnsPerTorrent
	// Every missing piece requestable at once (anacrolix's default, 64
	// MiB of unverified pieces per client, keeps ten nodes that start
	// together on the same first pieces, which only the bastion has).
	// Measured with the bastion's seeder (orchestrator/seed
	// BenchmarkSwarm, 10 leechers × 256 MiB at 32 MiB/s): bastion egress
	// 1.02 × the image and 11.8 s, against 2.10 × and 20.3 s with the
	// default; node CPU unchanged (nodebin/swarm BenchmarkSwarm, 10 × 100
	// MB: 5.6 against 5.4 CPU-s per GB, within run-to-run noise).
	cc.MaxUnverifiedBytes = 0
	return cc
}

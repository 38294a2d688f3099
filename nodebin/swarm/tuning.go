package swarm

import (
	"log/slog"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"
)

// chunkSize is the request (block) size. Every peer of a layercast swarm is
// an anacrolix client (nodes and the bastion's seeder), and those serve
// requests of any size up to MaxAllocPeerRequestDataPerConn (and, when an
// upload rate limit is set, its burst). A request is one message, one
// receive, one storage write and one request-strategy update, so the
// node's per-byte work falls with the block size: 16 → 64 KiB cut the
// loopback cost from 6.2 to 5.1 CPU-s per GiB (BenchmarkDownload1GiB); in
// a 10-node swarm 64 KiB → 256 KiB cut it from 9.7 to 7.0 CPU-s per GB
// (BenchmarkSwarm) and each host finished sooner. A layer's pieces are
// 256 KiB to 4 MiB (the bastion's AutoPieceLength), so a block is never
// larger than its piece, and the receiving side's message limit (4 blocks,
// anacrolix) leaves room. The seeder must accept 256 KiB requests.
const chunkSize = 256 << 10

// maxPeerRequestData bounds the piece data buffered per connection for
// requests a peer made: 16 blocks in flight.
const maxPeerRequestData = 4 << 20

// Connection limits per torrent. Every connection costs the node work for
// every piece anyone completes (have messages, request updates, its own
// reader and writer), and a layer's pieces spread as well over a dozen
// random peers as over fifty: in-process, 100 nodes downloading 10 MB
// took 104 s at anacrolix's 50 connections per torrent (98 CPU-s per GB)
// and 17 s at 12 (14 CPU-s per GB, BenchmarkSwarm). At 10 hosts a node
// still connects to every other host and the seeder.
const (
	maxConnsPerTorrent      = 12
	halfOpenConnsPerTorrent = 4
)

// clientConfig is the anacrolix configuration for a job's swarm: TCP only,
// no DHT/PEX/uPnP/webseeds (peers come from the job's tracker and the
// seeder), no header obfuscation (RC4 costs CPU and the network is the
// operator's own), IPv4 only (the tracker hands out compact IPv4 peers).
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
	return cc
}

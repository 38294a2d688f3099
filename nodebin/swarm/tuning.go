package swarm

import (
	"log/slog"

	"github.com/anacrolix/torrent"
	"golang.org/x/time/rate"
)

// chunkSize is the request (block) size. Every peer of a layercast swarm is
// an anacrolix client (nodes and the bastion's seeder), and those serve
// requests of any size up to MaxAllocPeerRequestDataPerConn; 64 KiB blocks
// cut per-byte protocol work by 4 against the customary 16 KiB (loopback
// benchmark: 6.2 → 5.1 CPU-s per GiB, see BenchmarkDownload1GiB).
const chunkSize = 64 << 10

// maxPeerRequestData bounds the piece data buffered per connection for
// requests a peer made: 64 blocks in flight.
const maxPeerRequestData = 4 << 20

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
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{}
	cc.MaxAllocPeerRequestDataPerConn = maxPeerRequestData
	cc.DialRateLimiter = rate.NewLimiter(100, 100)
	return cc
}

package swarm

import (
	"os"
	"strconv"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"log/slog"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/storage"
	"golang.org/x/time/rate"
)

// chunkSize is the request (block) size. Both ends of a layercast swarm are
// anacrolix clients, which serve requests of any size up to
// MaxAllocPeerRequestDataPerConn; larger blocks mean fewer messages and
// fewer trips through the client lock per byte.
var chunkSize = pp.Integer(tuneInt("CHUNK", 16<<10))

func tuneInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

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
	cc.HeaderObfuscationPolicy = torrent.HeaderObfuscationPolicy{Preferred: false, RequirePreferred: false}
	cc.DialRateLimiter = rate.NewLimiter(100, 100)
	cc.MaxAllocPeerRequestDataPerConn = tuneInt("MAXALLOC", cc.MaxAllocPeerRequestDataPerConn)
	cc.PieceHashersPerTorrent = tuneInt("HASHERS", cc.PieceHashersPerTorrent)
	cc.MaxUnverifiedBytes = int64(tuneInt("MAXUNV", int(cc.MaxUnverifiedBytes)))
	return cc
}

var _ storage.ClientImpl = (*fileStorage)(nil)

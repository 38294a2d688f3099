package swarm

import (
	"net"
	"net/netip"

	"github.com/anacrolix/torrent/iplist"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// allowList is an iplist.Ranger that blocks every IP except the allowed
// ones. anacrolix/torrent consults its IPBlocklist both before dialing a peer
// and when accepting one, so a blocklist of "everything else" keeps the swarm
// to the job's hosts in both directions.
type allowList struct {
	allowed jobspec.IPSet
}

// newAllowList parses the allowed IPs (addresses and ranges,
// jobspec.IPSet). It fails closed: an empty list allows nobody, as the
// bastion's seeder does.
func newAllowList(ips []string) (*allowList, error) {
	set, err := jobspec.ParseIPSet(ips)
	if err != nil {
		return nil, err
	}
	return &allowList{allowed: set}, nil
}

// Lookup reports an IP as blocked unless it is allowed.
func (a *allowList) Lookup(ip net.IP) (iplist.Range, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if ok && a.allowed.Contains(addr) {
		return iplist.Range{}, false
	}
	return iplist.Range{First: ip, Last: ip, Description: "not a host of this job"}, true
}

// NumRanges is part of iplist.Ranger; the list is a complement, so report
// the number of allowed ranges.
func (a *allowList) NumRanges() int { return a.allowed.Ranges() }

package swarm

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/anacrolix/torrent/iplist"
)

// allowList is an iplist.Ranger that blocks every IP except the allowed
// ones. anacrolix/torrent consults its IPBlocklist both before dialing a peer
// and when accepting one, so a blocklist of "everything else" keeps the swarm
// to the job's hosts in both directions.
type allowList struct {
	allowed map[netip.Addr]struct{}
}

// newAllowList parses the allowed IPs. It fails closed: an empty list
// allows nobody, as the bastion's seeder does.
func newAllowList(ips []string) (*allowList, error) {
	a := &allowList{allowed: make(map[netip.Addr]struct{}, len(ips))}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("allowed IP %q: %w", s, err)
		}
		a.allowed[ip.Unmap()] = struct{}{}
	}
	return a, nil
}

// Lookup reports an IP as blocked unless it is allowed.
func (a *allowList) Lookup(ip net.IP) (iplist.Range, bool) {
	addr, ok := netip.AddrFromSlice(ip)
	if ok {
		if _, allowed := a.allowed[addr.Unmap()]; allowed {
			return iplist.Range{}, false
		}
	}
	return iplist.Range{First: ip, Last: ip, Description: "not a host of this job"}, true
}

// NumRanges is part of iplist.Ranger; the list is a complement, so report
// the number of allowed addresses.
func (a *allowList) NumRanges() int { return len(a.allowed) }

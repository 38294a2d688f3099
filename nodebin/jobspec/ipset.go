package jobspec

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// IPSet is the set of addresses a spec's AllowedIPs name. An entry is one
// address ("10.0.0.7") or an inclusive range of one family
// ("10.0.0.2-10.0.0.41"). Every host's spec carries the whole list, so as
// single addresses the fleet's specs grew with the square of its size
// (10,000 hosts: 150 KB a spec, 1.5 GB over the bastion's link); a
// fleet's addresses are mostly consecutive, and as ranges the list stays
// a few entries long (CompactIPs).
type IPSet struct {
	ranges []ipRange // sorted by first, disjoint and not adjacent
}

type ipRange struct{ first, last netip.Addr }

// ParseIPSet reads AllowedIPs entries. IPv4-mapped IPv6 addresses count
// as IPv4.
func ParseIPSet(entries []string) (IPSet, error) {
	var rs []ipRange
	for _, e := range entries {
		r, err := parseIPRange(e)
		if err != nil {
			return IPSet{}, fmt.Errorf("allowed IP %q: %w", e, err)
		}
		rs = append(rs, r)
	}
	return IPSet{ranges: mergeRanges(rs)}, nil
}

func parseIPRange(e string) (ipRange, error) {
	lo, hi, isRange := strings.Cut(e, "-")
	first, err := netip.ParseAddr(lo)
	if err != nil {
		return ipRange{}, err
	}
	first = first.Unmap()
	if !isRange {
		return ipRange{first, first}, nil
	}
	last, err := netip.ParseAddr(hi)
	if err != nil {
		return ipRange{}, err
	}
	last = last.Unmap()
	if first.Is4() != last.Is4() {
		return ipRange{}, fmt.Errorf("a range's ends must be of one family")
	}
	if last.Less(first) {
		return ipRange{}, fmt.Errorf("the range ends before it starts")
	}
	return ipRange{first, last}, nil
}

// mergeRanges sorts rs and joins the ranges that overlap or touch.
func mergeRanges(rs []ipRange) []ipRange {
	slices.SortFunc(rs, func(a, b ipRange) int { return a.first.Compare(b.first) })
	var out []ipRange
	for _, r := range rs {
		if n := len(out); n > 0 && touches(out[n-1], r) {
			if out[n-1].last.Less(r.last) {
				out[n-1].last = r.last
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// touches reports whether r, which starts at or after prev, starts within
// prev or right after it.
func touches(prev, r ipRange) bool {
	if prev.last.Is4() != r.first.Is4() {
		return false
	}
	next := prev.last.Next()
	return !next.IsValid() || !next.Less(r.first)
}

// Contains reports whether a is in the set.
func (s IPSet) Contains(a netip.Addr) bool {
	a = a.Unmap()
	// The last range that starts at or before a.
	i, found := slices.BinarySearchFunc(s.ranges, a, func(r ipRange, a netip.Addr) int { return r.first.Compare(a) })
	if found {
		return true
	}
	return i > 0 && !s.ranges[i-1].last.Less(a) && s.ranges[i-1].last.Is4() == a.Is4()
}

// Ranges is the number of ranges the set holds (a single address is one).
func (s IPSet) Ranges() int { return len(s.ranges) }

// CompactIPs returns addresses as AllowedIPs entries: each run of
// consecutive addresses as one range, in address order. An entry that is
// not an address is kept as it is, for the node to refuse.
func CompactIPs(ips []string) []string {
	var rs []ipRange
	var out []string
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			out = append(out, s)
			continue
		}
		a = a.Unmap()
		rs = append(rs, ipRange{a, a})
	}
	for _, r := range mergeRanges(rs) {
		if r.first == r.last {
			out = append(out, r.first.String())
		} else {
			out = append(out, r.first.String()+"-"+r.last.String())
		}
	}
	return out
}

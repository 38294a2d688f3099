package jobspec

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func TestCompactIPs_RunsBecomeRanges(t *testing.T) {
	var fleet []string
	for i := 41; i >= 2; i-- { // any order
		fleet = append(fleet, fmt.Sprintf("10.77.0.%d", i))
	}
	in := append(fleet, "10.77.0.1", "10.77.0.43", "10.77.0.9", "::ffff:10.78.0.1", "fd00::1", "fd00::2", "bastion")
	got := CompactIPs(in)
	want := []string{"bastion", "10.77.0.1-10.77.0.41", "10.77.0.43", "10.78.0.1", "fd00::1-fd00::2"}
	if !slices.Equal(got, want) {
		t.Fatalf("CompactIPs = %q, want %q", got, want)
	}
}

func TestIPSet_HoldsExactlyItsEntries(t *testing.T) {
	var ips []string
	for _, n := range []int{2, 3, 4, 5, 9, 200, 201, 254} {
		ips = append(ips, fmt.Sprintf("10.0.%d.%d", n%3, n))
	}
	ips = append(ips, "192.168.1.255", "192.168.2.0", "fd00::ff", "fd00::100", "127.0.0.1")
	set, err := ParseIPSet(CompactIPs(ips))
	if err != nil {
		t.Fatal(err)
	}
	in := map[netip.Addr]bool{}
	for _, s := range ips {
		in[netip.MustParseAddr(s)] = true
	}
	// Every address near an entry: in the set exactly when listed.
	var probe []netip.Addr
	for a := range in {
		probe = append(probe, a, a.Prev(), a.Next())
	}
	probe = append(probe, netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("255.255.255.255"),
		netip.MustParseAddr("::"), netip.MustParseAddr("::ffff:10.0.2.2"), netip.MustParseAddr("::a00:202"))
	for _, a := range probe {
		want := in[a.Unmap()]
		if got := set.Contains(a); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	if set.Ranges() >= len(ips) {
		t.Errorf("%d ranges for %d addresses: nothing was joined", set.Ranges(), len(ips))
	}
}

func TestParseIPSet_MergesAndRefuses(t *testing.T) {
	set, err := ParseIPSet([]string{"10.0.0.5-10.0.0.9", "10.0.0.1-10.0.0.6", "10.0.0.10", "10.0.0.20-10.0.0.20"})
	if err != nil {
		t.Fatal(err)
	}
	if set.Ranges() != 2 || !set.Contains(netip.MustParseAddr("10.0.0.1")) || !set.Contains(netip.MustParseAddr("10.0.0.10")) ||
		set.Contains(netip.MustParseAddr("10.0.0.11")) || !set.Contains(netip.MustParseAddr("10.0.0.20")) {
		t.Fatalf("merged set: %+v", set)
	}
	if empty, err := ParseIPSet(nil); err != nil || empty.Ranges() != 0 || empty.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Fatalf("empty set: %+v %v", empty, err)
	}
	for _, bad := range []string{"10.0.0.9-10.0.0.1", "10.0.0.1-fd00::1", "10.0.0.300", "10.0.0.1-", "-10.0.0.1", "host"} {
		if _, err := ParseIPSet([]string{bad}); err == nil {
			t.Errorf("ParseIPSet(%q) accepted", bad)
		}
	}
}

// Package byterate reads and writes transfer rates as operators write them
// in flags and inventories: bytes per second ("50MB/s", "2.5MiB/s") or
// bits per second in tc's notation ("400mbit", "1gbit").
package byterate

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads a rate and returns bytes per second. Byte units are
// B, kB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers of 1024), each
// with an optional "/s"; bit units are bit, kbit, mbit, gbit (also
// written "Mbit/s" or "mbps"). "0" and "" mean no cap (0).
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" || t == "0" {
		return 0, nil
	}
	low := strings.ToLower(t)
	low = strings.TrimSuffix(low, "/s")
	if n, ok := strings.CutSuffix(low, "ps"); ok && strings.HasSuffix(n, "b") {
		low = n + "it" // "mbps" → "mbit"
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"bit", 1.0 / 8},
		{"gib", 1 << 30}, {"mib", 1 << 20}, {"kib", 1 << 10},
		{"gb", 1e9}, {"mb", 1e6}, {"kb", 1e3}, {"b", 1},
	}
	for _, u := range units {
		num, ok := strings.CutSuffix(low, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || v < 0 {
			break
		}
		r := int64(v * u.mult)
		if v > 0 && r < 1 {
			break
		}
		return r, nil
	}
	return 0, fmt.Errorf("rate %q: want bytes per second such as 50MB/s or 20MiB/s, or bits such as 400mbit; 0 for no cap", s)
}

// Format writes bytes per second as Parse reads them, in MB/s ("12.5MB/s"),
// or "unlimited" for 0.
func Format(bps int64) string {
	switch {
	case bps <= 0:
		return "unlimited"
	case bps >= 1e6:
		return strconv.FormatFloat(float64(bps)/1e6, 'f', -1, 64) + "MB/s"
	case bps >= 1e3:
		return strconv.FormatFloat(float64(bps)/1e3, 'f', -1, 64) + "kB/s"
	}
	return strconv.FormatInt(bps, 10) + "B/s"
}

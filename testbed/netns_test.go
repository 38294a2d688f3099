package testbed

import (
	"strings"
	"testing"
)

func TestQueueLimit_HoldsFiftyMillisecondsOfTheLinkInBytes(t *testing.T) {
	for _, c := range []struct {
		rate int64
		want int64
	}{
		{10e6, 62500},    // 10 Mbit/s: 50 ms is 62.5 kB
		{200e6, 1250000}, // 200 Mbit/s: about the 1000 packets it had before
		{1e6, 32 * 1500}, // slow links keep a few full packets
	} {
		if got := queueLimit(c.rate); got != c.want {
			t.Errorf("queueLimit(%d) = %d, want %d", c.rate, got, c.want)
		}
	}
	lines := shapeLines("lc0-ih1", 10e6)
	if last := lines[len(lines)-1]; !strings.Contains(last, "bfifo limit 62500") {
		t.Errorf("data queue %q, want a 62,500-byte bfifo", last)
	}
}

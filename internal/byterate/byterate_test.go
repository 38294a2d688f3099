package byterate

import "testing"

func TestParse_BytesAndBits(t *testing.T) {
	for in, want := range map[string]int64{
		"50MB/s": 50e6, "50mb": 50e6, "400mbit": 50e6, "400Mbit/s": 50e6, "400mbps": 50e6,
		"1gbit": 125e6, "5MB/s": 5e6, "2MiB/s": 2 << 20, "800kbit": 100e3, "1000B/s": 1000,
		"0": 0, "": 0, " 12.5MB/s ": 12.5e6,
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"fast", "-5MB/s", "50", "50 furlongs", "1bit"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) took it", bad)
		}
	}
}

func TestFormat_ReadsBack(t *testing.T) {
	for _, v := range []int64{5e6, 12.5e6, 1500, 7} {
		got, err := Parse(Format(v))
		if err != nil || got != v {
			t.Errorf("Parse(Format(%d)) = %d, %v", v, got, err)
		}
	}
	if Format(0) != "unlimited" {
		t.Error(Format(0))
	}
}

package textfmt

import "testing"

func TestFormat_SizesRatesAndOneLine(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Bytes(0), "0 B"},
		{Bytes(999), "999 B"},
		{Bytes(4_200_000), "4.2 MB"},
		{Bytes(300_000_000), "300 MB"},
		{Bytes(2_400_000_000), "2.4 GB"},
		{Ratio(186_000_000, 300_000_000), "186/300 MB"},
		{Ratio(0, 300_000_000), "0/300 MB"},
		{Rate(11_200_000), "11 MB/s"},
		{Rate(0.5), "–"},
		{OneLine("a\n b\t\x1b[31mc\x7f"), "a b [31mc"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

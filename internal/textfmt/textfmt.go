// Package textfmt writes the numbers and host text that the console and
// the headless printers show, the same way in both: sizes and rates with
// decimal units (as docker prints them) and host text on one line.
package textfmt

import (
	"fmt"
	"math"
	"strings"
	"unicode"
)

var byteUnits = []string{"B", "kB", "MB", "GB", "TB", "PB"}

// unitFor picks the decimal unit for n bytes.
func unitFor(n float64) int {
	u := 0
	for n >= 999.5 && u < len(byteUnits)-1 {
		n /= 1000
		u++
	}
	return u
}

func scaled(n float64, u int) string {
	v := n / math.Pow(1000, float64(u))
	switch {
	case u == 0 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case v < 9.95:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// Bytes prints n with a decimal unit: "0 B", "4.2 MB", "312 MB".
func Bytes(n int64) string {
	u := unitFor(float64(n))
	return scaled(float64(n), u) + " " + byteUnits[u]
}

// Ratio prints done of total in the unit of total: "186/300 MB".
func Ratio(done, total int64) string {
	u := unitFor(float64(total))
	return scaled(float64(done), u) + "/" + scaled(float64(total), u) + " " + byteUnits[u]
}

// Rate prints a transfer rate: "11 MB/s"; "–" below 1 byte/s.
func Rate(r float64) string {
	if r < 1 {
		return "–"
	}
	u := unitFor(r)
	return scaled(r, u) + " " + byteUnits[u] + "/s"
}

// OneLine joins s into one line and drops control characters, so that
// text from hosts (remote stderr may hold colour codes) never moves a
// cursor or breaks a layout.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

package inventory

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to every parser. It must never panic or
// hang; a failure must be an inventory error naming the file; a success
// must hold only valid, uniquely named hosts and groups of known hosts.
// The seed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample), uint8(0))
	f.Add([]byte(labINI), uint8(2))
	f.Add([]byte("all:\n  hosts:\n    h01:\n      ansible_port: 22\n  children:\n    web:\n      hosts: {h[1:3]: }\n"), uint8(3))
	dir := f.TempDir()
	formats := []Format{FormatAuto, FormatLayercast, FormatAnsibleINI, FormatAnsibleYAML}
	f.Fuzz(func(t *testing.T, data []byte, format uint8) {
		opts := Options{Dir: dir, Home: dir, Format: formats[int(format)%len(formats)]}
		var (
			inv  *Inventory
			err  error
			done = make(chan struct{})
		)
		go func() {
			defer close(done)
			inv, err = Parse("fuzz.yaml", data, opts)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse did not return within 5s on %q", data)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error is not ErrInvalid: %v", err)
			}
			for _, l := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(l, "fuzz.yaml") {
					t.Fatalf("error line does not name the file: %q", l)
				}
			}
			return
		}
		if len(inv.Hosts) == 0 {
			t.Fatal("parsed an inventory without hosts")
		}
		names := map[string]bool{}
		for _, h := range inv.Hosts {
			if names[h.Name] {
				t.Fatalf("duplicate host %q", h.Name)
			}
			names[h.Name] = true
			if err := h.Validate(); err != nil {
				t.Fatalf("host %s invalid after parse: %v", h.Name, err)
			}
			_ = h.String()
		}
		for g, members := range inv.Groups {
			for _, m := range members {
				if !names[m] {
					t.Fatalf("group %s has unknown member %q", g, m)
				}
			}
		}
		if _, err := inv.Select(nil, []string{"all"}); err != nil {
			t.Fatalf("select all: %v", err)
		}
	})
}

package seed

import (
	"errors"
	"testing"
)

func TestCheckRequest_KeepsBlocksInsideTheirPiece(t *testing.T) {
	// Three pieces of 256 KiB, the last one 1000 bytes.
	l := &layerInfo{length: 2*256<<10 + 1000, pieceLen: 256 << 10, numPieces: 3}
	for _, tc := range []struct {
		name string
		r    request
		ok   bool
	}{
		{"first block", request{0, 0, 64 << 10}, true},
		{"a whole piece", request{1, 0, 256 << 10}, true},
		{"all of the short last piece", request{2, 0, 1000}, true},
		{"piece past the end", request{3, 0, 16 << 10}, false},
		{"huge index", request{1 << 31, 0, 16 << 10}, false},
		{"empty block", request{0, 0, 0}, false},
		{"block over the largest", request{0, 0, maxBlockLen + 1}, false},
		{"block across the piece end", request{0, 250 << 10, 16 << 10}, false},
		{"past the short last piece", request{2, 0, 1001}, false},
		{"begin past the piece", request{0, 1 << 31, 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRequest(tc.r, l)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, errProtocol) {
				t.Errorf("err %v, want a protocol error", err)
			}
		})
	}
}

func TestRequestQueue_IsBoundedAndHonoursCancels(t *testing.T) {
	q := requestQueue{limit: 3}
	a, b, c, d := request{0, 0, 1}, request{0, 1, 1}, request{1, 0, 1}, request{2, 0, 1}
	for _, r := range []request{a, b, c} {
		if added, err := q.push(r); !added || err != nil {
			t.Fatalf("push %v: %v %v", r, added, err)
		}
	}
	if added, err := q.push(b); added || err != nil {
		t.Errorf("duplicate push: added %v, err %v", added, err)
	}
	if _, err := q.push(d); !errors.Is(err, errQueueFull) {
		t.Errorf("push past the limit: %v", err)
	}
	if !q.cancel(b) || q.cancel(b) {
		t.Error("cancel did not remove b exactly once")
	}
	if added, err := q.push(d); !added || err != nil {
		t.Errorf("push after a cancel: %v %v", added, err)
	}
	var order []request
	for r, ok := q.pop(); ok; r, ok = q.pop() {
		order = append(order, r)
	}
	if len(order) != 3 || order[0] != a || order[1] != c || order[2] != d {
		t.Errorf("popped %v, want [a c d]", order)
	}
}

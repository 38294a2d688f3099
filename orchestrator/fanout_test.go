package orchestrator

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFanOut_BoundsHostsWithoutBatches(t *testing.T) {
	hosts := []string{"slow", "a", "b", "c", "d", "e"}
	var (
		running, peak atomic.Int32
		mu            sync.Mutex
		finished      []string
	)
	release := make(chan struct{})
	errs := newFanOut(2, 1).each(context.Background(), len(hosts), func(ctx context.Context, i int, _ func()) error {
		h := hosts[i]
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if h == "slow" {
			<-release
		} else {
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		finished = append(finished, h)
		if len(finished) == len(hosts)-1 {
			close(release) // every other host finished while slow held its slot
		}
		mu.Unlock()
		if h == "c" {
			return errors.New("boom")
		}
		return nil
	})
	if peak.Load() > 2 {
		t.Errorf("%d ran at once, limit 2", peak.Load())
	}
	if finished[len(finished)-1] != "slow" {
		t.Errorf("finish order %v: the slow host held up others", finished)
	}
	for i, err := range errs {
		if (err != nil) != (hosts[i] == "c") {
			t.Errorf("host %s: error %v", hosts[i], err)
		}
	}
}

func TestFanOut_ReleasedSlotLetsTheNextHostStart(t *testing.T) {
	// Following a node holds no slot: with one slot, the second host
	// starts while the first still runs.
	second := make(chan struct{})
	errs := newFanOut(1, 1).each(context.Background(), 2, func(ctx context.Context, i int, release func()) error {
		if i == 0 {
			release()
			select {
			case <-second:
				return nil
			case <-time.After(5 * time.Second):
				return errors.New("the second host never started")
			}
		}
		close(second)
		return nil
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
}

func TestFanOut_StopsStartingWhenCtxEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var started []int
	var mu sync.Mutex
	errs := newFanOut(1, 1).each(ctx, 3, func(ctx context.Context, i int, _ func()) error {
		mu.Lock()
		started = append(started, i)
		mu.Unlock()
		cancel()
		return nil
	})
	if !slices.Equal(started, []int{0}) || !errors.Is(errs[1], context.Canceled) || !errors.Is(errs[2], context.Canceled) {
		t.Errorf("started %v, errors %v", started, errs)
	}
}

func TestFanOut_UploadWaitsForASlot(t *testing.T) {
	f := newFanOut(4, 1)
	hold := make(chan struct{})
	held := make(chan struct{})
	go f.upload(context.Background(), func() error { close(held); <-hold; return nil })
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.upload(ctx, func() error { t.Error("uploaded without a slot"); return nil })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "upload slot") {
		t.Errorf("want a wait for the slot, got %v", err)
	}
	close(hold)
	ran := false
	if err := f.upload(context.Background(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("upload with a free slot: ran=%v %v", ran, err)
	}
}

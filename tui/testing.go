package tui

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"sync"

	"github.com/layercast/layercast/orchestrator"
)

// FakeCatalog is an in-memory Catalog for tests and demos. Set its fields
// before use; SetInventory changes an inventory while a console reads it.
type FakeCatalog struct {
	Inventories   map[string]Inventory
	InventoryErrs map[string]error
	ImageList     []Image
	ImagesErr     error

	mu sync.Mutex
}

// SetInventory replaces the inventory at path and clears its error.
func (f *FakeCatalog) SetInventory(path string, inv Inventory) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Inventories == nil {
		f.Inventories = make(map[string]Inventory)
	}
	f.Inventories[path] = inv
	delete(f.InventoryErrs, path)
}

// LoadInventory implements Catalog.
func (f *FakeCatalog) LoadInventory(path string) (Inventory, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.InventoryErrs[path]; ok {
		return Inventory{}, err
	}
	inv, ok := f.Inventories[path]
	if !ok {
		return Inventory{}, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
	}
	inv.Path = path
	return inv, nil
}

// Images implements Catalog.
func (f *FakeCatalog) Images(ctx context.Context) ([]Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return append([]Image(nil), f.ImageList...), f.ImagesErr
}

// Recording is the event stream of one job, as `layercast run --json`
// prints it.
type Recording struct {
	Events []orchestrator.Event
	// HoldFrom is the index of the first event sent only after the job's
	// context is cancelled (the teardown of a cancelled job). Zero or
	// len(Events): nothing is held.
	HoldFrom int
}

// ReadRecording parses JSON-line events. In the recording of a cancelled
// job (its report says so) it holds back what followed the operator's
// cancel: from the first host cancelled or torn down, and the step events
// just before it.
func ReadRecording(r io.Reader) (Recording, error) {
	var rec Recording
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e orchestrator.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return Recording{}, fmt.Errorf("read recording line %d: %w", n, err)
		}
		rec.Events = append(rec.Events, e)
	}
	if err := sc.Err(); err != nil {
		return Recording{}, fmt.Errorf("read recording: %w", err)
	}
	rec.HoldFrom = len(rec.Events)
	if n := len(rec.Events); n == 0 || rec.Events[n-1].Report == nil || !rec.Events[n-1].Report.Cancelled {
		return rec, nil
	}
	for i, e := range rec.Events {
		if e.Kind == orchestrator.EventTeardown || (e.Kind == orchestrator.EventHostState && e.State == orchestrator.HostCancelled) {
			rec.HoldFrom = i
			break
		}
	}
	for rec.HoldFrom > 0 && rec.HoldFrom < len(rec.Events) && rec.Events[rec.HoldFrom-1].Kind == orchestrator.EventStep {
		rec.HoldFrom--
	}
	return rec, nil
}

// ReplayEngine is an Engine that replays recordings, one per call to Run
// (the last one repeats). Events before HoldFrom go out at once; the rest
// wait for the context to be cancelled, like a job that runs until the
// operator stops it.
type ReplayEngine struct {
	Recordings []Recording

	mu    sync.Mutex
	calls []orchestrator.Options
}

// Run implements Engine.
func (e *ReplayEngine) Run(ctx context.Context, opts orchestrator.Options, sink orchestrator.Sink) (*orchestrator.Report, error) {
	e.mu.Lock()
	n := len(e.calls)
	e.calls = append(e.calls, opts)
	e.mu.Unlock()
	if len(e.Recordings) == 0 {
		return nil, fmt.Errorf("replay engine: no recording")
	}
	rec := e.Recordings[min(n, len(e.Recordings)-1)]
	hold := rec.HoldFrom
	if hold <= 0 || hold > len(rec.Events) {
		hold = len(rec.Events)
	}
	var report *orchestrator.Report
	emit := func(evs []orchestrator.Event) {
		for _, ev := range evs {
			if ev.Kind == orchestrator.EventJobDone {
				report = ev.Report
			}
			sink.Emit(ev)
		}
	}
	emit(rec.Events[:hold])
	if hold == len(rec.Events) {
		return report, nil
	}
	<-ctx.Done()
	emit(rec.Events[hold:])
	return report, ctx.Err()
}

// Calls returns the options of every Run so far.
func (e *ReplayEngine) Calls() []orchestrator.Options {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]orchestrator.Options(nil), e.calls...)
}

package orchestrator

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/openssh"
)

// Hostile is text a hostile host sends in every field it fills: an OSC
// (sets the terminal's title), CSIs (clears the screen, turns text red),
// a C1 CSI, a carriage return, bidi overrides and isolates, a
// left-to-right mark, a line separator, and Markdown that would show an
// image, HTML and a table cell of its own in a summary.
const Hostile = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\u009b31m\rover\u202eevil\u2066iso\u2069\u200emark\u2028 ![x](http://evil.example/x.png) <img src=x> | `code`"

// HostileJob is a job on fake hosts that each put Hostile into what they
// send: h1 ends done, with Hostile in its node's state messages and logs,
// in what an ended job left in its /tmp, and in a progress event about a
// layer the job does not have; h2's node fails with Hostile in its error
// and leaves temporary images named with it; h3's SSH connection fails
// with Hostile in the remote's words; h4's node claims a Hostile image
// ID; h5's node dies early with Hostile on its stderr. Tests of every
// consumer of the engine's events (printers, console, reports) run it to
// show that nothing of it reaches the operator unescaped.
type HostileJob struct {
	Engine  *Engine
	Options Options
}

// NewHostileJob sets the job up with its inventory, cache and node
// binaries in dir.
func NewHostileJob(dir string) (*HostileJob, error) {
	hosts := []string{"h1", "h2", "h3", "h4", "h5"}
	var inv strings.Builder
	inv.WriteString("hosts:\n")
	for i, h := range hosts {
		fmt.Fprintf(&inv, "  - name: %s\n    address: 192.0.2.%d\n", h, 11+i)
	}
	invPath := filepath.Join(dir, "inventory.yaml")
	if err := os.WriteFile(invPath, []byte(inv.String()), 0o600); err != nil {
		return nil, err
	}
	nodes := filepath.Join(dir, "nodes")
	if err := os.MkdirAll(nodes, 0o700); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("a stand-in for the node binary"))
	_ = zw.Close()
	if err := os.WriteFile(filepath.Join(nodes, nodeassets.FileName("amd64")), gz.Bytes(), 0o600); err != nil {
		return nil, err
	}

	dialer := &hostops.FakeDialer{Conns: map[string]*hostops.FakeConn{}, Errs: map[string]error{
		"h3": fmt.Errorf("probe host: %w", &openssh.ExitError{Cmd: "sh", Code: 1, Stderr: Hostile}),
	}}
	play := func(host string, node func(spec *jobspec.Spec, emit func(jobspec.Event), p *openssh.FakeProcess) error) *hostops.FakeConn {
		c := hostops.NewFakeConn(inventory.Host{Name: host})
		c.StartFunc = func(ctx context.Context, _ openssh.Command, p *openssh.FakeProcess) {
			dec := jobspec.NewDecoder(p.StdinReader())
			enc := jobspec.NewEncoder(p.StdoutWriter())
			spec, err := jobspec.ReadSpec(dec)
			if err != nil {
				p.Exit(err)
				return
			}
			emit := func(e jobspec.Event) { e.Time = time.Now(); _ = enc.Encode(e) }
			if err := node(spec, emit, p); err != nil {
				p.Exit(err)
				return
			}
			for {
				var c jobspec.Control
				if err := dec.Decode(&c); err != nil || c.Kind == jobspec.ControlStop {
					break
				}
			}
			emit(jobspec.Event{Kind: jobspec.EventExit, Message: Hostile})
			p.Exit(nil)
		}
		dialer.Conns[host] = c
		return c
	}
	layers := func(spec *jobspec.Spec) []jobspec.LayerProgress {
		var lp []jobspec.LayerProgress
		for _, l := range spec.Layers {
			lp = append(lp, jobspec.LayerProgress{Digest: l.Digest, Done: l.Size, Total: l.Size})
		}
		return lp
	}
	h1 := play("h1", func(spec *jobspec.Spec, emit func(jobspec.Event), _ *openssh.FakeProcess) error {
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateChecking, Message: Hostile})
		emit(jobspec.Event{Kind: jobspec.EventLog, Message: Hostile})
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading, Message: Hostile})
		emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: []jobspec.LayerProgress{{Digest: "sha256:" + Hostile, Done: 1, Total: 1}}}})
		emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: layers(spec), FromPeers: 10, FromSeeder: 20, Peers: 3}})
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateImporting, Message: Hostile})
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDone, ImageID: spec.ImageID, Message: Hostile})
		return nil
	})
	h1.Stale = []hostops.StaleDir{{Dir: "/tmp/layercast-" + Hostile, Removed: true, Killed: true, PID: 42}}
	var h2 *hostops.FakeConn
	h2 = play("h2", func(spec *jobspec.Spec, emit func(jobspec.Event), p *openssh.FakeProcess) error {
		// Temporary images are named after the job: the teardown removes
		// them, since this node dies without saying it cleaned up.
		h2.TempImages = []string{jobspec.TempRefPrefix(spec.JobID) + Hostile}
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDownloading})
		emit(jobspec.Event{Kind: jobspec.EventProgress, Progress: &jobspec.Progress{Layers: layers(spec)}})
		_, _ = fmt.Fprintln(p.StderrWriter(), Hostile)
		emit(jobspec.Event{Kind: jobspec.EventError, State: jobspec.StateFailed, Message: "import: " + Hostile})
		return errors.New("exit status 1") // no exit event: its temporary images stay
	})
	play("h4", func(spec *jobspec.Spec, emit func(jobspec.Event), _ *openssh.FakeProcess) error {
		emit(jobspec.Event{Kind: jobspec.EventState, State: jobspec.StateDone, ImageID: "sha256:" + Hostile})
		return nil
	})
	play("h5", func(spec *jobspec.Spec, emit func(jobspec.Event), p *openssh.FakeProcess) error {
		_, _ = fmt.Fprintln(p.StderrWriter(), Hostile)
		return errors.New(Hostile)
	})
	docker := imagecache.NewFakeDocker("lab/hostile:v1", bytes.Repeat([]byte{1}, 4000), bytes.Repeat([]byte{2}, 7000))
	eng, err := NewEngine(Deps{
		Docker: docker,
		Dialer: func(*inventory.Inventory, Options) (Dialer, error) {
			return Reach[*hostops.FakeConn](dialer), nil
		},
		Nodes:    nodeassets.Dir(nodes),
		CacheDir: filepath.Join(dir, "cache"),
	})
	if err != nil {
		return nil, err
	}
	return &HostileJob{Engine: eng, Options: Options{InventoryPath: invPath, Image: "lab/hostile:v1", NoNodeCache: true}}, nil
}

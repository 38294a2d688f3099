// Package orchestrator is layercast's controller: it turns an Options into a
// job, runs the job's steps (prepare the image, serve it, reach the fleet,
// run the node on every host, tear everything down) and reports typed events
// to whoever watches. It knows nothing of the screen.
package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/orchestrator/nodeassets"
	"github.com/layercast/layercast/orchestrator/registrysource"
	"github.com/layercast/layercast/orchestrator/seed"
)

// ErrConfig marks errors in what the operator asked for: inventory,
// selection, image, options. Run returns them before any host is touched.
var ErrConfig = errors.New("bad job configuration")

type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }
func (e *configError) Is(t error) bool {
	return t == ErrConfig
}

func configErr(err error) error { return &configError{err: err} }

// Deps are the engine's edges. cmd/layercast wires the real ones; tests put
// fakes here.
type Deps struct {
	// Docker is the bastion's Docker daemon; nil when the bastion has
	// none (the registry source still works).
	Docker imagecache.Docker
	// Registry tunes the registry source; the zero value reads the
	// bastion's Docker config for credentials.
	Registry registrysource.Options
	// Dialer returns the SSH dialer for a job: the inventory gives the
	// known_hosts file, the options the host key policy.
	Dialer func(inv *inventory.Inventory, opts Options) (Dialer, error)
	// Nodes are the node binaries to upload.
	Nodes *nodeassets.Set
	// CacheDir is the default image cache when Options.CacheDir is empty.
	CacheDir string
	Logger   *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Engine runs jobs. It is safe to run one job after another; each Run is
// independent.
type Engine struct {
	deps Deps
}

// NewEngine checks deps and returns an engine.
func NewEngine(deps Deps) (*Engine, error) {
	if deps.Dialer == nil || deps.Nodes == nil {
		return nil, errors.New("engine needs an SSH dialer and node binaries")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Engine{deps: deps}, nil
}

// job is what the steps of one job share: the operator's input, checked,
// and the serve step's hand-over to the fleet step. Everything else a step
// needs it is given when it is made.
type job struct {
	*prepared
	id    string
	token string
	log   *slog.Logger
	emit  func(Event)
	// allowed are the job's hosts' IPs, resolved once for the allow lists.
	allowed []string
	// served is where the serve step serves the layers; nil in registry
	// mode.
	served *served
	// egress is the bastion's upload budget (--max-rate), shared by the
	// seeder and the node binary uploads.
	egress *rate.Limiter
}

// unverified says why some hosts that ended done were not checked
// against the bastion's image, or "" when every one was.
func (j *job) unverified(hosts []HostResult) string {
	var names []string
	for _, h := range hosts {
		if h.Unverified {
			names = append(names, h.Host)
		}
	}
	switch {
	case len(names) == 0:
		return ""
	case j.expect == nil:
		return fmt.Sprintf("the bastion has no copy of %s to compare with: %s hold whatever the registry serves under that name (docker pull it on the bastion to have it checked)", j.opts.Image, summarize(names))
	default:
		return fmt.Sprintf("%s run another CPU than the bastion's copy of %s (%s): their image was not compared", summarize(names), j.opts.Image, j.expect.Platform)
	}
}

// summarize lists up to five names and counts the rest.
func summarize(names []string) string {
	if len(names) > 5 {
		return fmt.Sprintf("%s and %d more hosts", strings.Join(names[:5], ", "), len(names)-5)
	}
	if len(names) == 1 {
		return "host " + names[0]
	}
	return "hosts " + strings.Join(names, ", ")
}

// layerMatcher checks a node's progress against the layers of im, the
// host's image in p2p mode; against none (whatever the registry serves)
// when im is nil, in registry mode.
func (j *job) layerMatcher(im *imagecache.Image) layerMatcher {
	m := layerMatcher{peers: len(j.hosts)}
	if j.mode != ModeRegistry && im != nil {
		m.layers = make([]LayerInfo, 0, len(im.Layers))
		for _, l := range im.Layers {
			m.layers = append(m.layers, LayerInfo{Digest: l.Digest, Size: l.Size})
		}
	}
	return m
}

// imageFacts sets what the job's events and report say of its image: the
// image ID when there is one image, the size and layer files served, and
// each platform's image.
func (j *job) imageFacts() (id string, size int64, layers []LayerInfo, platforms []PlatformImage) {
	if j.expect != nil {
		id = j.expect.ID
	}
	if len(j.images) == 1 {
		id = j.images[0].ID
	}
	for _, l := range j.layers() {
		size += l.Size
		layers = append(layers, LayerInfo{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType, Unpacked: l.UnpackedSize})
	}
	for _, im := range j.images {
		platforms = append(platforms, PlatformImage{Platform: im.Platform.String(), ImageID: im.ID, Size: im.Size(), Unpacked: im.UnpackedSize()})
	}
	return id, size, layers, platforms
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// Run executes one job and returns its report.
//
// Errors in the job's configuration (options, inventory, selection, image)
// wrap ErrConfig; they are returned before any host is touched and before
// any event is emitted. Otherwise Run emits EventJobStarted first and
// EventJobDone with the report last, and returns the report; a non-nil
// error then means the bastion itself failed (the report says which hosts
// got the image anyway). Cancelling ctx tears the job down and returns a
// report with Cancelled set.
func (e *Engine) Run(ctx context.Context, opts Options, sink Sink) (*Report, error) {
	if sink == nil {
		sink = SinkFunc(func(Event) {})
	}
	opts = opts.WithDefaults()
	if err := opts.Validate(); err != nil {
		return nil, configErr(err)
	}
	// The bastion's own use is measured from here to the report; a
	// cancelled job's teardown still counts, hence WithoutCancel.
	use := startResourceSampler(context.WithoutCancel(ctx), resourceEvery)
	defer use.stop() // on every return; a second stop is harmless
	id := time.Now().UTC().Format("20060102-150405") + "-" + randomHex(3)
	log := e.deps.Logger.With(slog.String("job", id))
	// Everything that can be wrong in the operator's input is checked here,
	// before any host is touched.
	p, err := e.prepare(ctx, opts, log)
	if err != nil {
		return nil, err
	}
	// Every event leaves through here, host text made harmless.
	j := &job{prepared: p, id: id, token: randomHex(16), log: log, egress: seed.NewLimiter(opts.MaxRate), emit: func(ev Event) {
		if ev.Time.IsZero() {
			ev.Time = e.deps.Now()
		}
		sink.Emit(safeEvent(ev))
	}}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}

	started := e.deps.Now()
	names := make([]string, len(j.hosts))
	for i, h := range j.hosts {
		names[i] = h.Name
	}
	book := newHostBook(names, e.deps.Now, j.emit)
	info := &JobInfo{ID: j.id, Image: opts.Image, Mode: string(j.mode), Source: string(j.source), Hosts: names, Ignored: j.ignored,
		MaxRate: opts.MaxRate}
	info.ImageID, info.Size, info.Layers, info.Platforms = j.imageFacts()
	j.emit(Event{Kind: EventJobStarted, Job: info})
	j.allowed = resolveHosts(ctx, j.dialer, j.hosts, j.log)

	serve := &serveStep{}
	fleet := &fleetStep{book: book, nodes: e.deps.Nodes}
	steps := []step[*job]{serve, fleet}
	if j.mode == ModeRegistry {
		steps = []step[*job]{fleet}
	}
	runErr := runSteps(ctx, j, steps)
	if ctx.Err() != nil {
		book.cancelRest(cancelReason(ctx.Err(), opts.Timeout))
	} else if runErr != nil {
		book.cancelRest(runErr.Error())
	}

	bastion := use.stop()
	bastion.Hosts = len(j.hosts)
	sent := serve.sent()
	rep := &Report{
		JobID: j.id, Image: opts.Image, Mode: string(j.mode), Started: started,
		Duration:  e.deps.Now().Sub(started),
		Cancelled: errors.Is(ctx.Err(), context.Canceled),
		TimedOut:  errors.Is(ctx.Err(), context.DeadlineExceeded),
		Hosts:     book.results(),
		Egress:    sent.Uploaded,
		Resent:    sent.Resent,
		Missing:   book.missing(),
		Bastion:   bastion,
	}
	if fleet.bins != nil {
		rep.NodeBinary = fleet.bins.report()
		t := fleet.torrents.report()
		rep.Torrents = TorrentsReport{FromPeers: t.FromPeers, FromBastion: t.FromBastion, BastionBytes: t.BastionBytes}
	}
	rep.ImageID, rep.Size, _, rep.Platforms = j.imageFacts()
	rep.Source = string(j.source)
	rep.Unverified = j.unverified(rep.Hosts)
	j.emit(Event{Kind: EventJobDone, Report: rep})
	if ctx.Err() != nil {
		return rep, nil
	}
	return rep, runErr
}

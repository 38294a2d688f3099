package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
)

const testSHA = "aa"

func TestBinSources_BastionMakesTheFirstUploadsOneAtATime(t *testing.T) {
	b := newBinSources()
	ctx := context.Background()
	waits := func(what string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if src, err := b.get(wctx, testSHA, true, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: got %+v, %v; want it to wait", what, src, err)
		}
	}
	for i := range b.firstUploads {
		src, err := b.get(ctx, testSHA, true, 0)
		if err != nil || src.peer != nil {
			t.Fatalf("upload %d: %+v, %v; want the bastion", i, src, err)
		}
		// While it runs, the next host waits: for it to end, or a peer.
		waits(fmt.Sprintf("a host during upload %d", i))
		b.done(src, testSHA, "h", true, 100, time.Second)
	}
	// The first uploads done and no peer yet: the next host waits for
	// one.
	waits("the host after the first uploads")
	// A failed upload frees its place: the next host gets the bastion.
	b2 := newBinSources()
	src, _ := b2.get(ctx, testSHA, true, 0)
	b2.done(src, testSHA, "h", false, 0, time.Second)
	if src, err := b2.get(ctx, testSHA, true, 0); err != nil || src.peer != nil {
		t.Fatalf("after a failed upload: %+v, %v; want the bastion", src, err)
	}
	// Another CPU's binary has first uploads of its own.
	if src, err := b.get(ctx, "bb", true, 0); err != nil || src.peer != nil {
		t.Fatalf("other arch: %+v, %v", src, err)
	}
}

func TestBinSources_PeersServeAFewAtATime(t *testing.T) {
	b := newBinSources()
	b.firstUploads = 0
	b.addPeer(testSHA, "h1", "http://h1/x")
	ctx := context.Background()
	var got []binSource
	for range b.perPeer {
		src, err := b.get(ctx, testSHA, true, 0)
		if err != nil || src.peer == nil || src.peer.host != "h1" {
			t.Fatalf("got %+v, %v; want peer h1", src, err)
		}
		got = append(got, src)
	}
	// h1 is full: the next host waits until h1 frees a slot.
	next := make(chan binSource, 1)
	go func() {
		src, _ := b.get(ctx, testSHA, true, 0)
		next <- src
	}()
	select {
	case src := <-next:
		t.Fatalf("a host got %+v while every peer was busy", src)
	case <-time.After(50 * time.Millisecond):
	}
	b.done(got[0], testSHA, "h", true, 100, time.Second)
	select {
	case src := <-next:
		if src.peer == nil || src.peer.host != "h1" {
			t.Fatalf("got %+v, want h1 again", src)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting host never got the freed peer")
	}
	if r := b.report(); r.FromPeers != 1 || r.FromBastion != 0 {
		t.Errorf("report %+v", r)
	}
}

func TestBinSources_AHostSetUpAgainCountsOnce(t *testing.T) {
	b := newBinSources()
	ctx := context.Background()
	// h1 takes the binary from the bastion, loses its connection, and is
	// set up again from its node cache; h2 comes from its cache twice.
	src, err := b.get(ctx, testSHA, true, 0)
	if err != nil || src.peer != nil {
		t.Fatalf("got %+v, %v; want the bastion", src, err)
	}
	b.done(src, testSHA, "h1", true, 100, time.Second)
	b.cached("h1")
	b.cached("h2")
	b.cached("h2")
	// h3 fails from the bastion once, then gets it.
	src, _ = b.get(ctx, testSHA, true, 0)
	b.done(src, testSHA, "h3", false, 0, time.Second)
	src, _ = b.get(ctx, testSHA, true, 0)
	b.done(src, testSHA, "h3", true, 100, time.Second)
	want := NodeBinaryReport{FromCache: 2, FromBastion: 1, BastionBytes: 200}
	if r := b.report(); r != want {
		t.Errorf("report %+v, want %+v: each host once, by its last source; every upload's bytes", r, want)
	}
}

func TestBinSources_AFailedPeerIsNotAskedAgain(t *testing.T) {
	b := newBinSources()
	b.firstUploads = 0
	b.addPeer(testSHA, "bad", "http://bad/x")
	b.addPeer(testSHA, "good", "http://good/x")
	ctx := context.Background()
	src, _ := b.get(ctx, testSHA, true, 0)
	first := src.peer.host
	b.done(src, testSHA, "h", false, 0, 0)
	for range 3 {
		src, err := b.get(ctx, testSHA, true, 0)
		if err != nil || src.peer == nil || src.peer.host == first {
			t.Fatalf("got %+v, %v after %s failed", src, err, first)
		}
		b.done(src, testSHA, "h", true, 100, time.Second)
	}
}

func TestBinSources_HostsThatCannotFetchGetTheBastion(t *testing.T) {
	b := newBinSources()
	b.firstUploads = 0
	b.addPeer(testSHA, "h1", "http://h1/x")
	src, err := b.get(context.Background(), testSHA, false, 0)
	if err != nil || src.peer != nil {
		t.Fatalf("got %+v, %v; a host without curl or wget must get the bastion", src, err)
	}
}

func TestBinSources_FallsBackToTheBastionWhenNoPeerTurnsUp(t *testing.T) {
	b := newBinSources()
	b.firstUploads, b.minWait = 1, 30*time.Millisecond
	ctx := context.Background()
	first, _ := b.get(ctx, testSHA, true, 0)
	// Before the first upload is done, a host waits however long it
	// takes: on a slow link the first upload is the peer to come.
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := b.get(wctx, testSHA, true, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a host gave up on peers before any upload finished: %v", err)
	}
	b.done(first, testSHA, "h", true, 100, 5*time.Millisecond)
	// The upload finished but its node never hands the binary on: after
	// minWait the host asks the bastion.
	src, err := b.get(ctx, testSHA, true, 0)
	if err != nil || src.peer != nil {
		t.Fatalf("got %+v, %v; want the bastion after the wait", src, err)
	}
}

func TestBinSources_WaitsForABusyPeerRatherThanTheBastion(t *testing.T) {
	b := newBinSources()
	b.firstUploads, b.perPeer, b.minWait = 1, 1, 30*time.Millisecond
	ctx := context.Background()
	first, _ := b.get(ctx, testSHA, true, 0)
	b.done(first, testSHA, "h", true, 100, 5*time.Millisecond)
	b.addPeer(testSHA, "h1", "http://h1/x")
	busy, err := b.get(ctx, testSHA, true, 0)
	if err != nil || busy.peer == nil {
		t.Fatalf("got %+v, %v; want the peer", busy, err)
	}
	// The only peer is busy for longer than the wait: the next host
	// keeps waiting for it instead of asking the bastion.
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if src, err := b.get(wctx, testSHA, true, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %+v, %v; want it to wait for the busy peer", src, err)
	}
	// Once the peer is free, the host gets it.
	b.done(busy, testSHA, "h", true, 100, time.Millisecond)
	if src, err := b.get(ctx, testSHA, true, 0); err != nil || src.peer == nil {
		t.Fatalf("got %+v, %v; want the freed peer", src, err)
	}
}

// binaryLab runs a job on n fake hosts whose nodes hand the binary on.
func binaryLab(t *testing.T, n int) (*testLab, []*hostops.FakeConn) {
	t.Helper()
	l, conns, _ := binaryLabSpecs(t, n)
	return l, conns
}

// binaryLabSpecs is binaryLab that also hands back the specs the hosts'
// nodes received.
func binaryLabSpecs(t *testing.T, n int) (*testLab, []*hostops.FakeConn, <-chan *jobspec.Spec) {
	t.Helper()
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("h%d", i+1))
	}
	l := newTestLab(t, names...)
	specs := make(chan *jobspec.Spec, n)
	var conns []*hostops.FakeConn
	for _, h := range names {
		c := l.play(h, fakeNode(t, specs, ""))
		c.Facts.CacheHome = "/home/deploy/.cache"
		c.Facts.Fetch = "curl"
		conns = append(conns, c)
	}
	return l, conns, specs
}

func TestFleet_NodeBinaryIsHandedOnByTheHosts(t *testing.T) {
	l, conns := binaryLab(t, 8)
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed: %+v", rep.Hosts)
	}
	// The bastion uploads to at most three hosts; fewer when a host that
	// got it first already hands it on by the time the next one asks.
	nb := rep.NodeBinary
	if nb.FromBastion < 1 || nb.FromBastion > 3 || nb.FromBastion+nb.FromPeers != 8 || nb.FromCache != 0 {
		t.Errorf("node binary: %+v, want 1 to 3 from the bastion and the rest from peers", nb)
	}
	uploads, fetches := 0, 0
	for _, c := range conns {
		for p := range c.Uploaded() {
			uploads++
			if !strings.HasPrefix(p, "/home/deploy/.cache/layercast/layercast-node-") {
				t.Errorf("uploaded to %s, want the node cache", p)
			}
		}
		for _, url := range c.Fetched() {
			fetches++
			if !strings.HasPrefix(url, "http://192.0.2.10:4040/layercast-node-") {
				t.Errorf("fetched from %s", url)
			}
		}
	}
	if uploads != nb.FromBastion || fetches != nb.FromPeers {
		t.Errorf("%d uploads, %d fetches for %+v", uploads, fetches, nb)
	}
	for _, h := range rep.Hosts {
		if h.NodeFrom == "" {
			t.Errorf("%s: no source recorded", h.Host)
		}
	}
}

func TestFleet_CachedNodeBinaryIsNotSentAgain(t *testing.T) {
	l, conns, specs := binaryLabSpecs(t, 2)
	bin, err := l.deps.Nodes.Get("amd64")
	if err != nil {
		t.Fatal(err)
	}
	cached := "/home/deploy/.cache/layercast/layercast-node-" + bin.SHA256
	for _, c := range conns {
		c.Cache(cached)
	}
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if nb := rep.NodeBinary; nb.FromCache != 2 || nb.FromBastion+nb.FromPeers != 0 {
		t.Errorf("node binary: %+v, want both from the cache", nb)
	}
	for _, c := range conns {
		if len(c.Uploaded())+len(c.Fetched()) != 0 {
			t.Errorf("a cached host got the binary again")
		}
		// The command that made the work dir started the node.
		assertCallsInOrder(t, c, "mkdir "+rep.JobID, "from cache "+cached, "start "+cached+" "+jobspec.NodeJobFlag+" "+rep.JobID)
		if n := len(slices.DeleteFunc(c.Calls(), func(s string) bool { return !strings.HasPrefix(s, "start ") })); n != 1 {
			t.Errorf("%d nodes started, want 1: %q", n, c.Calls())
		}
	}
	// The node marks the cached binary used (the work dir command no
	// longer touches it).
	for range 2 {
		if s := <-specs; !slices.Equal(s.MarkUsed, []string{cached, cached + ".gz"}) {
			t.Errorf("spec marks %q used, want the cached binary and its .gz", s.MarkUsed)
		}
	}
}

func TestFleet_WithoutNodeCacheTheBinaryGoesIntoTheWorkDir(t *testing.T) {
	l, conns, specs := binaryLabSpecs(t, 1)
	rep, _, err := l.run(t, context.Background(), Options{NoNodeCache: true})
	if err != nil {
		t.Fatal(err)
	}
	for p := range conns[0].Uploaded() {
		if p != jobspec.WorkDir(rep.JobID)+"/"+hostops.NodeBinaryName {
			t.Errorf("uploaded to %s, want the work dir", p)
		}
	}
	if s := <-specs; len(s.MarkUsed) != 0 {
		t.Errorf("a binary brought for this job is marked used: %q", s.MarkUsed)
	}
}

func TestFleet_HostFallsBackToTheBastionWhenPeersFail(t *testing.T) {
	l, conns := binaryLab(t, 4)
	for _, c := range conns {
		c.FetchErr = fmt.Errorf("fetch node binary: %w: connection refused", hostops.ErrFetch)
	}
	rep, _, err := l.run(t, context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f := rep.Failed(); len(f) != 0 {
		t.Fatalf("failed: %+v", rep.Hosts)
	}
	if nb := rep.NodeBinary; nb.FromBastion != 4 {
		t.Errorf("node binary: %+v, want every host from the bastion once its peers failed", nb)
	}
}

func TestEngine_CleanRemovesTheNodeCache(t *testing.T) {
	l, conns := binaryLab(t, 2)
	conns[0].Cache("/home/deploy/.cache/layercast/layercast-node-" + strings.Repeat("1", 64))
	conns[1].FetchErr = errors.New("unused")
	eng, err := NewEngine(l.deps)
	if err != nil {
		t.Fatal(err)
	}
	res, err := eng.Clean(context.Background(), Options{InventoryPath: l.inv}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || len(res[0].NodeCache) != 1 || len(res[1].NodeCache) != 0 || res[0].Error != "" {
		t.Fatalf("clean: %+v", res)
	}
	res, err = eng.Clean(context.Background(), Options{InventoryPath: l.inv}, false)
	if err != nil || len(res[0].NodeCache) != 0 {
		t.Fatalf("second clean: %+v, %v; the cache is empty already", res, err)
	}
}

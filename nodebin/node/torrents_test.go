package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/nodebin/node"
	"github.com/layercast/layercast/nodebin/swarm"
)

// slimSpec is a spec for img whose layers name their torrents by infohash
// only, as the bastion sends it; torrents are what it left out.
func slimSpec(t *testing.T, spec *jobspec.Spec) []jobspec.LayerTorrent {
	t.Helper()
	var torrents []jobspec.LayerTorrent
	for i := range spec.Layers {
		l := &spec.Layers[i]
		tor := fmt.Appendf(nil, "d4:infod6:lengthi%de4:name%d:%see", l.Size, len(l.Digest), l.Digest)
		ih, err := swarm.InfoHashOf(tor)
		if err != nil {
			t.Fatal(err)
		}
		l.Torrent, l.InfoHash = nil, ih
		torrents = append(torrents, jobspec.LayerTorrent{Digest: l.Digest, Torrent: tor})
	}
	return torrents
}

// serveTorrents serves ts at /name, as another host's node does.
func serveTorrents(t *testing.T, ts []jobspec.LayerTorrent) string {
	t.Helper()
	body, err := json.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/t.json"
}

// sendControl writes c after the spec: the node checks its daemon before it
// needs the torrents, so its checking state says it read the spec.
func (r *run) sendControl(c jobspec.Control) {
	if len(r.seen) == 0 {
		r.waitState(jobspec.StateChecking)
	}
	b, err := json.Marshal(c)
	if err != nil {
		r.t.Fatal(err)
	}
	go fmt.Fprintln(r.stdin, string(b))
}

func tampered(ts []jobspec.LayerTorrent) []jobspec.LayerTorrent {
	bad := append([]jobspec.LayerTorrent(nil), ts...)
	bad[0].Torrent = []byte(strings.Replace(string(bad[0].Torrent), "length", "lengtH", 1))
	return bad
}

func TestNode_FetchesTheTorrentsFromAnotherHostChecksThemAndHandsThemOn(t *testing.T) {
	img := testImage(21, 1000, 2000)
	dir := workDir(t)
	spec := node.SpecFor(img, "lab/app:1", dir)
	torrents := slimSpec(t, spec)
	// The node serves its binary, and so the torrents, to the job's hosts.
	bin := filepath.Join(t.TempDir(), "node.gz")
	if err := os.WriteFile(bin, []byte("binary"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec.Handoff = &jobspec.Handoff{Path: bin, Name: "node.gz"}
	spec.AllowedIPs, spec.PublicIP = []string{"127.0.0.1"}, "127.0.0.1"
	var swarmed *jobspec.Spec
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img)}, swarmSpec: func(s *jobspec.Spec) { swarmed = s }})
	// A host that serves torrents that do not match is passed over.
	r.sendControl(jobspec.Control{Kind: jobspec.ControlTorrents, From: []string{serveTorrents(t, tampered(torrents)), serveTorrents(t, torrents)}})
	ev := r.waitFor("torrents", func(ev jobspec.Event) bool {
		return ev.Kind == jobspec.EventTorrents || ev.Kind == jobspec.EventNeedTorrents
	})
	if ev.Kind != jobspec.EventTorrents || ev.Addr == "" {
		t.Fatalf("got %+v, want the torrents served", ev)
	}
	r.waitState(jobspec.StateDone)
	for i, l := range swarmed.Layers {
		if string(l.Torrent) != string(torrents[i].Torrent) {
			t.Errorf("layer %d joined the swarm with torrent %q, want %q", i, l.Torrent, torrents[i].Torrent)
		}
	}
	// It hands them on: what it serves is what it checked.
	resp, err := http.Get("http://" + ev.Addr + "/" + jobspec.TorrentsName(spec.ImageID))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var served []jobspec.LayerTorrent
	if err := json.Unmarshal(body, &served); err != nil || len(served) != len(torrents) || string(served[1].Torrent) != string(torrents[1].Torrent) {
		t.Errorf("served %s (%v), want the checked torrents", body, err)
	}
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit code %d; %s", code, r.summary())
	}
}

func TestNode_AsksTheBastionWhenNoHostServesTheTorrents(t *testing.T) {
	img := testImage(22, 1000)
	spec := node.SpecFor(img, "lab/app:1", workDir(t))
	torrents := slimSpec(t, spec)
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img)}})
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()
	r.sendControl(jobspec.Control{Kind: jobspec.ControlTorrents, From: []string{serveTorrents(t, tampered(torrents)), gone.URL + "/t.json"}})
	need := r.waitFor("a request for the torrents", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventNeedTorrents })
	if !strings.Contains(need.Message, "infohash") || !strings.Contains(need.Message, gone.URL) {
		t.Errorf("request says %q; want why each host failed", need.Message)
	}
	r.sendControl(jobspec.Control{Kind: jobspec.ControlTorrents, Torrents: torrents})
	r.waitFor("torrents", func(ev jobspec.Event) bool { return ev.Kind == jobspec.EventTorrents })
	r.waitState(jobspec.StateDone)
	r.send(jobspec.ControlStop)
	if code := r.exit(); code != node.ExitOK {
		t.Errorf("exit code %d; %s", code, r.summary())
	}
}

func TestNode_TorrentsFromTheBastionThatDoNotMatchAreABadSpec(t *testing.T) {
	img := testImage(23, 1000)
	dir := workDir(t)
	spec := node.SpecFor(img, "lab/app:1", dir)
	torrents := slimSpec(t, spec)
	r := start(t, setup{spec: spec, leecher: &node.FakeLeecher{Files: files(img)}})
	r.sendControl(jobspec.Control{Kind: jobspec.ControlTorrents, Torrents: tampered(torrents)})
	if code := r.exit(); code != node.ExitBadSpec {
		t.Errorf("exit code %d, want %d; %s", code, node.ExitBadSpec, r.summary())
	}
	if msg := r.errorMessage(); !strings.Contains(msg, "torrents from the bastion") || !strings.Contains(msg, "infohash") {
		t.Errorf("error %q; %s", msg, r.summary())
	}
	if r.swarms != 0 {
		t.Error("joined the swarm with torrents that do not match")
	}
	assertGone(t, dir)
}

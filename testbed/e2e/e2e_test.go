package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/testbed"
)

const mb = 1000 * 1000

// binary returns the layercast binary under test.
func binary(t testing.TB) string {
	t.Helper()
	return testbed.LayercastBin(t)
}

// labTest begins a lab test: it needs layercast's binary (see binary) and
// runs beside the package's other lab tests, -parallel of them at a time
// (make test: 2). Each builds a lab of its own (labs of different names
// share nothing but the machine). Some lab tests mostly wait, on shaped
// links and on the product's timeouts (a node's heartbeat, a frozen
// daemon's deadline); others keep the CPU busy importing images. Run one
// at a time the package took 27 minutes and more on a two-core machine;
// two at a time 18–19, with minutes in which both waited.
func labTest(t *testing.T) string {
	t.Helper()
	bin := binary(t)
	t.Parallel()
	return bin
}

// job is one run of `layercast run --json` on the lab's bastion.
type job struct {
	cmd    *exec.Cmd
	stderr strings.Builder
	mu     sync.Mutex
	events []orchestrator.Event
	// seen is signalled for every event.
	seen chan orchestrator.Event
	done chan struct{}
	code int
}

func startJob(t testing.TB, lab *testbed.Lab, args ...string) *job {
	t.Helper()
	return startJobEnv(t, lab, nil, args...)
}

// startJobEnv is startJob with extra environment variables for layercast.
func startJobEnv(t testing.TB, lab *testbed.Lab, env []string, args ...string) *job {
	t.Helper()
	bin := binary(t)
	full := append([]string{bin, "run", "--json", "--progress-interval", "250ms", "--cache-dir", filepath.Join(lab.Dir(), "cache"), "--log-file", filepath.Join(lab.Dir(), "layercast.log")}, args...)
	cmd, err := lab.Command(context.Background(), "bastion", full...)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(cmd.Env, env...)
	j := &job{cmd: cmd, seen: make(chan orchestrator.Event, 4096), done: make(chan struct{})}
	cmd.Stderr = &j.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(j.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		for sc.Scan() {
			var e orchestrator.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("not a JSON event: %q", sc.Text())
				continue
			}
			j.mu.Lock()
			j.events = append(j.events, e)
			j.mu.Unlock()
			select {
			case j.seen <- e:
			default:
			}
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			j.code = ee.ExitCode()
		} else if err != nil {
			j.code = -1
		}
	}()
	t.Cleanup(func() {
		select {
		case <-j.done:
		default:
			_ = cmd.Process.Kill()
			<-j.done
		}
	})
	return j
}

// wait waits for the job to end and returns its report and exit code.
func (j *job) wait(t testing.TB, limit time.Duration) (*orchestrator.Report, int) {
	t.Helper()
	select {
	case <-j.done:
	case <-time.After(limit):
		_ = j.cmd.Process.Kill()
		<-j.done
		t.Fatalf("layercast did not finish within %s; stderr:\n%s", limit, j.stderr.String())
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.events) - 1; i >= 0; i-- {
		if j.events[i].Kind == orchestrator.EventJobDone {
			return j.events[i].Report, j.code
		}
	}
	return nil, j.code
}

// waitFor waits until an event matches.
func (j *job) waitFor(t testing.TB, limit time.Duration, match func(orchestrator.Event) bool) orchestrator.Event {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case e := <-j.seen:
			if match(e) {
				return e
			}
		case <-j.done:
			t.Fatalf("layercast ended before the awaited event; stderr:\n%s", j.stderr.String())
		case <-deadline:
			t.Fatalf("no awaited event within %s", limit)
		}
	}
}

// info is the job as announced in its first event.
func (j *job) info(t testing.TB) *orchestrator.JobInfo {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.events) == 0 || j.events[0].Kind != orchestrator.EventJobStarted {
		t.Fatal("first event is not job_started")
	}
	return j.events[0].Job
}

func runJob(t testing.TB, lab *testbed.Lab, limit time.Duration, args ...string) (*orchestrator.Report, int, *job) {
	t.Helper()
	j := startJob(t, lab, args...)
	rep, code := j.wait(t, limit)
	if rep == nil {
		t.Fatalf("no report (exit %d); stderr:\n%s", code, j.stderr.String())
	}
	return rep, code, j
}

func hostResults(rep *orchestrator.Report) map[string]orchestrator.HostResult {
	out := map[string]orchestrator.HostResult{}
	for _, h := range rep.Hosts {
		out[h.Host] = h
	}
	return out
}

// imageOn returns the image ID a host's daemon has for ref, or "".
func imageOn(t testing.TB, lab *testbed.Lab, host, ref string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), host, "docker", "image", "inspect", "-f", "{{.Id}}", ref)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// leftovers lists what a job left on a host: its temp dirs, its node's
// processes (named by their command line), and anything in the node cache
// but the node binary and its compressed twin, which is all a job keeps on
// a host (see layercast clean).
func leftovers(t testing.TB, lab *testbed.Lab, host, jobID string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), host, "sh", "-c",
		`ls -d /tmp/layercast-* 2>/dev/null
for p in /proc/[0-9]*; do case " $(tr '\0' ' ' < $p/cmdline 2>/dev/null) " in *" --job $1 "*) echo "pid ${p#/proc/}: $(tr '\0' ' ' < $p/cmdline)";; esac; done
for f in "${XDG_CACHE_HOME:-$HOME/.cache}"/layercast/*; do case "$f" in */layercast-node-*.partial-*) echo "partial $f";; */layercast-node-*) ;; *) [ -e "$f" ] && echo "cache $f";; esac; done
true`, "sh", jobID)
	if err != nil {
		t.Fatalf("look for leftovers on %s: %v", host, err)
	}
	return strings.TrimSpace(string(out))
}

func assertNothingLeft(t testing.TB, lab *testbed.Lab, rep *orchestrator.Report) {
	t.Helper()
	for _, h := range lab.Hosts() {
		if left := leftovers(t, lab, h, rep.JobID); left != "" {
			t.Errorf("%s: job %s left:\n%s", h, rep.JobID, left)
		}
	}
}

// removeImage deletes ref and everything it holds from the hosts' daemons,
// so the next job starts clean.
func removeImages(t testing.TB, lab *testbed.Lab, refs ...string) {
	t.Helper()
	for _, h := range lab.Hosts() {
		args := append([]string{"docker", "image", "rm", "-f"}, refs...)
		_, _ = lab.Exec(context.Background(), h, args...)
		_, _ = lab.Exec(context.Background(), h, "docker", "image", "prune", "-af")
	}
}

func makeImage(t testing.TB, lab *testbed.Lab, spec testbed.ImageSpec) *testbed.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	img, err := lab.MakeImage(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestJob_EveryHostGetsTheImagePeerToPeer is the full job of issue 3: 8
// hosts at 100 mbit, a 300 MB image in 5 layers.
func TestJob_EveryHostGetsTheImagePeerToPeer(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 8, Rate: "100mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v1", Size: 300 * mb, Layers: 5})

	rep, code, j := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v1")
	if code != 0 {
		t.Fatalf("exit %d; report %+v; stderr:\n%s", code, rep.Hosts, j.stderr.String())
	}
	var fromPeers int64
	for _, h := range rep.Hosts {
		if h.State != orchestrator.HostDone {
			t.Errorf("%s: %s %s", h.Host, h.State, h.Error)
		}
		if got := imageOn(t, lab, h.Host, "lab/app:v1"); got != img.ID {
			t.Errorf("%s: lab/app:v1 is %q, want %s", h.Host, got, img.ID)
		}
		fromPeers += h.FromPeers
	}
	ratio := float64(rep.Egress) / float64(rep.Size)
	t.Logf("300 MB to 8 hosts at 100mbit in %s; bastion egress %.1f MB = %.2f× image size; %.1f MB came from peers",
		rep.Duration.Round(100*time.Millisecond), float64(rep.Egress)/mb, ratio, float64(fromPeers)/mb)
	if ratio > 2.5 {
		t.Errorf("bastion egress %.2f× image size, want at most 2.5×", ratio)
	}
	if fromPeers == 0 {
		t.Error("no host received bytes from another host")
	}
	// The layers' torrents crossed the bastion's link for the first host
	// only; the others fetched them from hosts that had them, and checked
	// them (a torrent that did not match its infohash would have failed
	// the host).
	if tr := rep.Torrents; tr.FromBastion != 1 || tr.FromPeers != len(rep.Hosts)-1 {
		t.Errorf("torrents from the bastion to %d hosts, from other hosts to %d; want 1 and %d", tr.FromBastion, tr.FromPeers, len(rep.Hosts)-1)
	}
	out, err := lab.Exec(context.Background(), "h01", "docker", "run", "--rm", "--network", "none", "lab/app:v1")
	if err != nil || string(out) != testbed.HelloMessage {
		t.Errorf("docker run on h01: %q, %v", out, err)
	}
	assertNothingLeft(t, lab, rep)
}

// TestJob_HostsWithTheBaseDownloadOnlyWhatTheyLack: dedup against layers
// already in the daemon.
func TestJob_HostsWithTheBaseDownloadOnlyWhatTheyLack(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 8, Rate: "100mbit"})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/app:v2", Size: 200 * mb, Layers: 5, BaseSize: 100 * mb, BaseLayers: 2})
	withBase := []string{"h01", "h02", "h03", "h04"}
	if err := lab.Preload(context.Background(), "lab/app:v2", withBase...); err != nil {
		t.Fatal(err)
	}
	rep, code, j := runJob(t, lab, 5*time.Minute, "-i", lab.InventoryPath(), "lab/app:v2")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, j.stderr.String())
	}
	info := j.info(t)
	var missing int64
	for _, l := range info.Layers[2:] {
		missing += l.Size
	}
	res := hostResults(rep)
	for _, h := range withBase {
		r := res[h]
		got := r.FromPeers + r.FromSeeder
		t.Logf("%s: skipped %d layers, received %.1f MB for %.1f MB missing", h, r.LayersSkipped, float64(got)/mb, float64(missing)/mb)
		if r.LayersSkipped != 2 {
			t.Errorf("%s skipped %d layers, want the 2 base layers", h, r.LayersSkipped)
		}
		if float64(got) > 1.05*float64(missing) {
			t.Errorf("%s received %d bytes, want at most missing %d + 5%%", h, got, missing)
		}
		if id := imageOn(t, lab, h, "lab/app:v2"); id != img.ID {
			t.Errorf("%s: image %q, want %s", h, id, img.ID)
		}
	}
	for _, h := range []string{"h05", "h06", "h07", "h08"} {
		if r := res[h]; r.LayersSkipped != 0 || r.State != orchestrator.HostDone {
			t.Errorf("%s: %+v", h, r)
		}
	}
}

// TestJob_WrongHostKeyIsRefusedBeforeUpload: one host's known_hosts entry
// holds another host's key; that host fails before anything is uploaded,
// the rest finish, exit 1.
func TestJob_WrongHostKeyIsRefusedBeforeUpload(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 3})
	img := makeImage(t, lab, testbed.ImageSpec{Tag: "lab/small:v1", Size: 20 * mb, Layers: 2})

	kh, err := os.ReadFile(lab.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var keyOf = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(kh)), "\n") {
		f := strings.Fields(l)
		lines = append(lines, l)
		keyOf[f[0]] = strings.Join(f[1:], " ")
	}
	h1, _ := lab.Machine("h01")
	h2, _ := lab.Machine("h02")
	for i, l := range lines {
		if strings.Fields(l)[0] == h2.IP {
			lines[i] = h2.IP + " " + keyOf[h1.IP]
		}
	}
	dir := t.TempDir()
	inv, _ := os.ReadFile(lab.InventoryPath())
	invText := strings.ReplaceAll(string(inv), "./known_hosts", filepath.Join(dir, "known_hosts"))
	invText = strings.ReplaceAll(invText, "./id_ed25519", lab.IdentityPath())
	os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "inventory.yaml"), []byte(invText), 0o600)

	rep, code, _ := runJob(t, lab, 3*time.Minute, "-i", filepath.Join(dir, "inventory.yaml"), "lab/small:v1")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	res := hostResults(rep)
	if r := res["h02"]; r.State != orchestrator.HostFailed || !strings.Contains(r.Error, "host key") {
		t.Errorf("h02: %+v", r)
	}
	if left := leftovers(t, lab, "h02", rep.JobID); left != "" {
		t.Errorf("h02 got files although its key was wrong: %s", left)
	}
	for _, h := range []string{"h01", "h03"} {
		if res[h].State != orchestrator.HostDone || imageOn(t, lab, h, "lab/small:v1") != img.ID {
			t.Errorf("%s: %+v", h, res[h])
		}
	}
}

// TestJob_InterruptTearsEverythingDown: SIGINT in the middle of a job.
func TestJob_InterruptTearsEverythingDown(t *testing.T) {
	labTest(t)
	lab := testbed.UpForTest(t, testbed.Config{Hosts: 4, Rate: "50mbit"})
	makeImage(t, lab, testbed.ImageSpec{Tag: "lab/big:v1", Size: 200 * mb, Layers: 3})
	j := startJob(t, lab, "-i", lab.InventoryPath(), "lab/big:v1")
	started := j.waitFor(t, 2*time.Minute, func(e orchestrator.Event) bool {
		return e.Kind == orchestrator.EventHostProgress && e.Progress.Done > 10*mb
	})
	t.Logf("interrupting while %s has %d bytes", started.Host, started.Progress.Done)
	if err := j.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	rep, code := j.wait(t, 2*time.Minute)
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if rep == nil || !rep.Cancelled {
		t.Fatalf("report %+v not marked cancelled", rep)
	}
	for _, h := range lab.Hosts() {
		if left := leftovers(t, lab, h, rep.JobID); left != "" {
			t.Errorf("%s: left after interrupt:\n%s", h, left)
		}
		if id := imageOn(t, lab, h, "lab/big:v1"); id != "" && hostResults(rep)[h].State != orchestrator.HostDone {
			t.Errorf("%s holds lab/big:v1 although its job was cancelled", h)
		}
	}
	var teardowns int
	j.mu.Lock()
	for _, e := range j.events {
		if e.Kind == orchestrator.EventTeardown {
			teardowns++
		}
	}
	j.mu.Unlock()
	if teardowns != len(lab.Hosts())+1 {
		t.Errorf("%d teardown events, want one per host and one for the bastion", teardowns)
	}
}

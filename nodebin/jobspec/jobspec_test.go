package jobspec

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func validSpec() *Spec {
	d := "sha256:" + strings.Repeat("ab", 32)
	return &Spec{
		Version: Version, JobID: "j1", Host: "h01", Image: "lab/app:v1", ImageID: d, Config: []byte(`{}`),
		Layers:   []Layer{{DiffID: d, ChainID: d, Digest: d, Size: 10, Torrent: []byte("d4:infod")}},
		Announce: "http://10.0.0.1:1/announce/t", WorkDir: "/tmp/layercast-j1",
	}
}

func TestSpec_RoundTripsThroughTheStream(t *testing.T) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	s := validSpec()
	s.Heartbeat = Duration(15 * time.Second)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(Control{Kind: ControlStop}); err != nil {
		t.Fatal(err)
	}
	dec := NewDecoder(&buf)
	got, err := ReadSpec(dec)
	if err != nil {
		t.Fatal(err)
	}
	if got.Heartbeat.Or(0) != 15*time.Second || string(got.Layers[0].Torrent) != "d4:infod" {
		t.Fatalf("got %+v", got)
	}
	var c Control
	if err := dec.Decode(&c); err != nil || c.Kind != ControlStop {
		t.Fatalf("control %+v, %v", c, err)
	}
	if err := dec.Decode(&c); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last line: %v, want EOF", err)
	}
}

func TestSpec_ValidateNamesEveryProblem(t *testing.T) {
	s := validSpec()
	s.Version = 99
	s.ImageID = "latest"
	s.Layers[0].Size = 0
	s.Mode = "carrier-pigeon"
	err := s.Validate()
	if err == nil {
		t.Fatal("accepted a broken spec")
	}
	for _, want := range []string{"version 99", "carrier-pigeon"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	s = validSpec()
	s.Layers[0].DiffID = "sha256:XYZ"
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("bad diff ID: %v", err)
	}
	s = validSpec()
	s.Layers = nil
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "no layers") {
		t.Errorf("no layers: %v", err)
	}
}

func TestDecoder_RefusesOverlongLines(t *testing.T) {
	line := `{"kind":"log","msg":"` + strings.Repeat("x", MaxLine) + `"}` + "\n"
	var e Event
	if err := NewDecoder(strings.NewReader(line)).Decode(&e); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("decoded a line longer than MaxLine: %v", err)
	}
}

// FuzzReadSpec: whatever arrives on the node's stdin, ReadSpec returns a
// valid spec or an error, never a panic, and an accepted spec validates.
func FuzzReadSpec(f *testing.F) {
	var buf bytes.Buffer
	_ = NewEncoder(&buf).Encode(validSpec())
	f.Add(buf.Bytes())
	f.Add([]byte(`{"version":2,"mode":"registry","job_id":"j","image":"a","work_dir":"/tmp/x"}`))
	f.Add([]byte(`{"version":2,"heartbeat":"1h","layers":[{"size":-1}]}`))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ReadSpec(NewDecoder(bytes.NewReader(b)))
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ReadSpec accepted a spec that does not validate: %v", err)
		}
		if s.Mode != "registry" && len(s.Layers) == 0 {
			t.Fatal("accepted a p2p spec without layers")
		}
	})
}

// FuzzDecodeEvents: the bastion reads node events from a remote process;
// garbage must give errors, not panics, and decoded events must encode
// back to the same value.
func FuzzDecodeEvents(f *testing.F) {
	var buf bytes.Buffer
	enc := NewEncoder(&buf)
	_ = enc.Encode(Event{Time: time.Unix(1, 0).UTC(), Kind: EventState, State: StateDownloading})
	_ = enc.Encode(Event{Kind: EventProgress, Progress: &Progress{Layers: []LayerProgress{{Digest: "sha256:x", Done: 1, Total: 2}}, Peers: 3, Rate: 1.5}})
	_ = enc.Encode(Event{Kind: EventError, State: StateFailed, Message: "disk full"})
	f.Add(buf.Bytes())
	f.Add([]byte(`{"kind":"progress","progress":{"layers":null,"rate":1e400}}`))
	f.Add([]byte(`{"t":"not a time"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dec := NewDecoder(bytes.NewReader(b))
		for range 1000 {
			var e Event
			err := dec.Decode(&e)
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				continue
			}
			var out bytes.Buffer
			if err := NewEncoder(&out).Encode(e); err != nil {
				t.Fatalf("decoded event does not encode: %v", err)
			}
			var again Event
			if err := NewDecoder(&out).Decode(&again); err != nil {
				t.Fatalf("re-encoded event does not decode: %v", err)
			}
		}
	})
}

func TestSpec_ValidateRuntime(t *testing.T) {
	for _, c := range []struct {
		name  string
		edit  func(*Spec)
		wrong string // empty: valid
	}{
		{"docker by default", func(s *Spec) {}, ""},
		{"containerd with defaults", func(s *Spec) { s.Runtime = RuntimeContainerd }, ""},
		{"containerd with address and namespace", func(s *Spec) {
			s.Runtime, s.ContainerdAddress, s.ContainerdNamespace = RuntimeContainerd, "unix:///run/k3s/containerd/containerd.sock", "k8s.io"
		}, ""},
		{"unknown runtime", func(s *Spec) { s.Runtime = "cri-o" }, `runtime "cri-o"`},
		{"containerd in registry mode", func(s *Spec) { s.Runtime, s.Mode = RuntimeContainerd, "registry" }, "registry mode"},
		{"relative address", func(s *Spec) { s.Runtime, s.ContainerdAddress = RuntimeContainerd, "run/containerd.sock" }, "containerd_address"},
		{"bad namespace", func(s *Spec) { s.Runtime, s.ContainerdNamespace = RuntimeContainerd, "k8s io" }, "containerd_namespace"},
		{"containerd fields for docker", func(s *Spec) { s.ContainerdNamespace = "k8s.io" }, "runtime is docker"},
		{"docker host for containerd", func(s *Spec) { s.Runtime, s.DockerHost = RuntimeContainerd, "unix:///x" }, "docker_host"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.edit(s)
			err := s.Validate()
			switch {
			case c.wrong == "" && err != nil:
				t.Errorf("rejected: %v", err)
			case c.wrong != "" && (err == nil || !strings.Contains(err.Error(), c.wrong)):
				t.Errorf("error %v, want one naming %q", err, c.wrong)
			}
		})
	}
	if got := validSpec().RuntimeOf(); got != RuntimeDocker {
		t.Errorf("default runtime %q", got)
	}
}

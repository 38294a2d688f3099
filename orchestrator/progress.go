package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// A node's progress events are the only host text the bastion reads in
// bulk, several times a second per host. They are bounded twice: decoding
// stops at the job's layer count (a line of "{}," would otherwise become a
// million entries), and what was decoded is matched to the job's own
// layers by digest, with the job's sizes, so a node can neither invent
// layers nor inflate totals.

// maxRegistryLayers bounds the layers a node may report in registry mode,
// where the bastion may not know the image: more than overlay2 stacks.
const maxRegistryLayers = 128

// errDropped marks a progress event the bastion ignores.
var errDropped = errors.New("progress event dropped")

// nodeEvent is a node's event as the bastion decodes it: the event of the
// contract, its progress read with a bound.
type nodeEvent struct {
	jobspec.Event
	// Progress shadows Event.Progress: encoding/json fills the outer field.
	Progress boundedProgress `json:"progress"`
}

// boundedProgress decodes a jobspec.Progress holding at most max layers.
// A longer list is not decoded past max+1 entries: the event is dropped
// (err says why) and the line it came in is all it cost.
type boundedProgress struct {
	max int
	p   *jobspec.Progress
	err error
}

func (b *boundedProgress) UnmarshalJSON(data []byte) error {
	b.p, b.err = nil, nil
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return nil
	}
	p, err := decodeProgress(data, b.max)
	if err != nil {
		b.err = fmt.Errorf("%w: %w", errDropped, err)
		return nil // the rest of the event is still good
	}
	b.p = p
	return nil
}

// decodeProgress reads a Progress object token by token: its layers one at
// a time, at most max of them, any other value skipped without being
// built.
func decodeProgress(data []byte, max int) (*jobspec.Progress, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("progress is not an object")
	}
	p := &jobspec.Progress{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		switch key {
		case "layers":
			if p.Layers, err = decodeLayers(dec, max); err != nil {
				return nil, err
			}
		case "peers":
			err = dec.Decode(&p.Peers)
		case "rate":
			err = dec.Decode(&p.Rate)
		case "from_peers":
			err = dec.Decode(&p.FromPeers)
		case "from_seeder":
			err = dec.Decode(&p.FromSeeder)
		case "uploaded":
			err = dec.Decode(&p.Uploaded)
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return nil, fmt.Errorf("progress field %.40q: %w", key, err)
		}
	}
	return p, nil
}

// decodeLayers reads an array of LayerProgress, at most max entries.
func decodeLayers(dec *json.Decoder, max int) ([]jobspec.LayerProgress, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if tok != json.Delim('[') {
		return nil, errors.New("layers is not a list")
	}
	var out []jobspec.LayerProgress
	for dec.More() {
		if len(out) == max {
			return nil, fmt.Errorf("more than the %d layers of the job", max)
		}
		var l jobspec.LayerProgress
		if err := dec.Decode(&l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	_, err = dec.Token() // ']'
	return out, err
}

// skipValue reads past one JSON value token by token.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// layerMatcher turns a node's progress into the host's, against the job's
// layers: in p2p mode the bastion's own, in registry mode (layers nil)
// whatever the registry serves, up to maxRegistryLayers well-formed IDs.
type layerMatcher struct {
	layers []LayerInfo
	// peers is the most peers a host can have: every other host and the
	// bastion.
	peers int
}

// maxLayers is the most layers a progress event may list.
func (m layerMatcher) maxLayers() int {
	if m.layers != nil {
		return len(m.layers)
	}
	return maxRegistryLayers
}

// layerIDRE is a layer as a node may name it: a full sha256 digest, or in
// registry mode the daemon's short hex ID of a blob.
var layerIDRE = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|[0-9a-f]{12,64})$`)

// match returns the host's progress, or an error wrapping errDropped when
// the event lists a layer the job does not have.
func (m layerMatcher) match(p *jobspec.Progress) (*HostProgress, error) {
	hp := &HostProgress{
		Rate:  finite(p.Rate),
		Peers: min(max(p.Peers, 0), m.peers),
		// Counters a node keeps itself; only their sign is checked.
		FromPeers: max(p.FromPeers, 0), FromSeeder: max(p.FromSeeder, 0), Uploaded: max(p.Uploaded, 0),
	}
	if len(p.Layers) > m.maxLayers() {
		return nil, fmt.Errorf("%w: %d layers, the job has %d", errDropped, len(p.Layers), m.maxLayers())
	}
	if m.layers == nil {
		for _, l := range p.Layers {
			if !layerIDRE.MatchString(l.Digest) {
				return nil, fmt.Errorf("%w: layer %.80q is no layer ID", errDropped, l.Digest)
			}
			total := max(l.Total, 0)
			hp.Layers = append(hp.Layers, LayerProgress{Digest: l.Digest, Total: total, Done: min(max(l.Done, 0), total), Skipped: l.Skipped})
		}
	} else {
		// Each reported layer takes the next job layer with its digest:
		// an image may hold one layer twice.
		used := make([]bool, len(m.layers))
		hp.Layers = make([]LayerProgress, len(m.layers))
		for i, l := range m.layers {
			hp.Layers[i] = LayerProgress{Digest: l.Digest, Total: l.Size}
		}
		for _, l := range p.Layers {
			i := m.index(l.Digest, used)
			if i < 0 {
				return nil, fmt.Errorf("%w: layer %.80q is not one of the job's", errDropped, l.Digest)
			}
			used[i] = true
			lp := &hp.Layers[i]
			lp.Skipped = l.Skipped
			lp.Done = min(max(l.Done, 0), lp.Total)
			if l.Skipped {
				lp.Done = lp.Total
			}
		}
	}
	for _, l := range hp.Layers {
		hp.Total += l.Total
		hp.Done += l.Done
		if !l.Skipped {
			hp.Needed += l.Total
		}
	}
	return hp, nil
}

func (m layerMatcher) index(digest string, used []bool) int {
	for i, l := range m.layers {
		if !used[i] && l.Digest == digest {
			return i
		}
	}
	return -1
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0
	}
	return f
}

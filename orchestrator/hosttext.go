package orchestrator

import (
	"github.com/layercast/layercast/internal/textfmt"
)

// Text that comes from hosts (node events, remote stderr inside errors,
// probe answers, paths and image names hosts print) reaches the operator
// only through what the engine hands out: events, reports, plans and clean
// results. Each of those passes one of the functions below on its way out,
// and they make every string harmless with textfmt.HostText, the one place
// that decides what may be shown (see there). No printer, screen or report
// writer has to clean anything itself. Logs go through log/slog, whose
// handlers quote and escape such text on their own.

// safe is textfmt.HostText.
func safe(s string) string { return textfmt.HostText(s) }

// safeEvent cleans every string of an event the engine emits.
func safeEvent(e Event) Event {
	e.Message = safe(e.Message)
	if p := e.Progress; p != nil {
		c := *p
		c.Layers = make([]LayerProgress, len(p.Layers))
		for i, l := range p.Layers {
			l.Digest = safe(l.Digest)
			c.Layers[i] = l
		}
		e.Progress = &c
	}
	if i := e.Info; i != nil {
		c := *i
		c.Arch, c.Platform, c.ImageID = safe(c.Arch), safe(c.Platform), safe(c.ImageID)
		e.Info = &c
	}
	if e.Report != nil {
		e.Report.makeSafe()
	}
	if e.Job != nil {
		c := *e.Job
		c.Platforms = safePlatforms(c.Platforms)
		e.Job = &c
	}
	return e
}

// safePlatforms cleans what a registry's index and configs say of each
// platform's image: a registry is no more trusted than a host.
func safePlatforms(ps []PlatformImage) []PlatformImage {
	out := make([]PlatformImage, len(ps))
	for i, p := range ps {
		p.Platform, p.ImageID = safe(p.Platform), safe(p.ImageID)
		out[i] = p
	}
	return out
}

// makeSafe cleans the report in place.
func (r *Report) makeSafe() {
	r.Unverified = safe(r.Unverified)
	r.Platforms = safePlatforms(r.Platforms)
	for i := range r.Hosts {
		h := &r.Hosts[i]
		h.Error, h.ImageID, h.NodeFrom, h.Runtime = safe(h.Error), safe(h.ImageID), safe(h.NodeFrom), safe(h.Runtime)
	}
}

// makeSafe cleans the plan in place.
func (p *Plan) makeSafe() {
	p.Platforms = safePlatforms(p.Platforms)
	for i := range p.Hosts {
		h := &p.Hosts[i]
		h.Arch, h.Docker, h.Runtime, h.NodeCache, h.Error = safe(h.Arch), safe(h.Docker), safe(h.Runtime), safe(h.NodeCache), safe(h.Error)
		h.Platform, h.ImageID = safe(h.Platform), safe(h.ImageID)
	}
}

// makeSafe cleans what Clean reports of one host.
func (c *HostClean) makeSafe() {
	for _, list := range [][]string{c.WorkDirs, c.Live, c.TempImages, c.NodeCache} {
		for i := range list {
			list[i] = safe(list[i])
		}
	}
	c.Error = safe(c.Error)
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/layercast/layercast/nodebin/jobspec"
	"github.com/layercast/layercast/orchestrator/hostops"
)

// specFor builds the job spec one host's node reads: the image, where the
// swarm is (through the host's own forwards with --tunnel) and which peers
// to accept.
func (j *job) specFor(ctx context.Context, hr *hostRun, registryAuth string) (*jobspec.Spec, error) {
	spec := &jobspec.Spec{
		Version:       jobspec.Version,
		JobID:         j.id,
		Host:          hr.host.Name,
		Image:         j.opts.Image,
		Mode:          string(j.mode),
		DockerHost:    hr.host.DockerHost,
		WorkDir:       hr.dir,
		WorkBases:     hr.facts.WorkBases,
		Heartbeat:     jobspec.Duration(jobspec.DefaultHeartbeat),
		ProgressEvery: jobspec.Duration(jobspec.ProgressEveryFor(len(j.hosts))),
		PublicIP:      hr.facts.ServerIP,
	}
	if hr.facts.Runtime == hostops.RuntimeContainerd {
		h := hr.host
		spec.Runtime, spec.DockerHost = jobspec.RuntimeContainerd, ""
		spec.ContainerdAddress, spec.ContainerdNamespace, spec.ContainerdSnapshotter = h.ContainerdAddress, h.ContainerdNamespace, h.ContainerdSnapshotter
	}
	if j.mode == ModeRegistry {
		// On the node's stdin only: never in arguments or files.
		spec.RegistryAuth = registryAuth
		// The hosts the node hands its binary on to.
		spec.AllowedIPs = jobspec.CompactIPs(j.allowed)
		// The node checks its pull against the bastion's copy when that
		// is an image for the host's CPU; otherwise the host's result is
		// unverified.
		if j.expect != nil {
			if spec.ImageID = j.expect.idFor(hr.facts.Arch); spec.ImageID != "" {
				spec.Config = j.expect.Config
			}
		}
		return spec, nil
	}
	im := hr.image
	config, err := im.Config()
	if err != nil {
		return nil, err
	}
	sv := j.served
	spec.ImageID, spec.Config, spec.MaxRate = im.ID, config, j.hostMaxRate(hr.host)
	for _, l := range im.Layers {
		spec.Layers = append(spec.Layers, jobspec.Layer{DiffID: l.DiffID, ChainID: l.ChainID, Digest: l.Digest, Size: l.Size,
			MediaType: l.MediaType, UnpackedSize: l.UnpackedSize, InfoHash: sv.infoHashes[l.Digest]})
	}
	// The torrents follow in a ControlTorrents line (torrentsFor), from
	// other hosts where they can; through --tunnel the hosts may not
	// reach each other, and the spec carries them.
	if j.opts.Tunnel {
		for i := range spec.Layers {
			spec.Layers[i].Torrent = sv.torrents[spec.Layers[i].Digest]
		}
	}
	if j.opts.Tunnel {
		tf, err := hr.conn.Forward(ctx, sv.trackerAddr)
		if err != nil {
			return nil, fmt.Errorf("forward tracker port: %w", err)
		}
		sf, err := hr.conn.Forward(ctx, sv.seederAddr)
		if err != nil {
			return nil, fmt.Errorf("forward seeder port: %w", err)
		}
		tp, sp := tf.RemotePort(), sf.RemotePort()
		spec.Announce = sv.announceURL(net.JoinHostPort("127.0.0.1", strconv.Itoa(tp)))
		spec.Seeders = []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(sp))}
		spec.AllowedIPs = jobspec.CompactIPs(append(slices.Clone(j.allowed), "127.0.0.1"))
		return spec, nil
	}
	// The bastion as the host reaches it: --bastion-addr (a name goes to
	// the tracker's URL as given; the seeder is dialled, and accepted, at
	// the addresses it resolved to here), else as the SSH connection sees
	// it.
	bastion, ips := j.opts.BastionAddr, j.bastionIPs
	if bastion == "" {
		bastion, ips = hr.facts.ClientIP, []string{hr.facts.ClientIP}
	}
	if bastion == "" {
		return nil, errors.New("cannot tell the bastion's address from the SSH connection; pass --bastion-addr or --tunnel")
	}
	spec.Announce = sv.announceURL(net.JoinHostPort(bastion, portOf(sv.trackerAddr)))
	spec.Seeders = nil
	for _, ip := range ips {
		spec.Seeders = append(spec.Seeders, net.JoinHostPort(ip, portOf(sv.seederAddr)))
	}
	spec.AllowedIPs = jobspec.CompactIPs(append(slices.Clone(j.allowed), ips...))
	return spec, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/imagecache"
	"github.com/layercast/layercast/orchestrator/inventory"
	"github.com/layercast/layercast/tui"
)

// runConsole opens the console. Logs go to a file so they never garble
// the screen.
func runConsole(ctx context.Context, jf *jobFlags) error {
	if jf.logFile == "" {
		dir := jf.cacheDir
		if dir == "" {
			d, err := imagecache.DefaultDir()
			if err != nil {
				return err
			}
			dir = d
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create cache dir: %w", err)
		}
		jf.logFile = filepath.Join(dir, "layercast.log")
	}
	opts, eng, log, done, err := jf.setup()
	if err != nil {
		return err
	}
	defer done()
	// No daemon on the bastion is no reason to refuse: the console lists
	// no local images and jobs read their images from registries.
	docker, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		log.Warn("no Docker client on the bastion", "err", err)
		docker = nil
	} else {
		defer docker.Close()
	}
	return tui.Run(ctx, tui.Config{
		Engine:        eng,
		Catalog:       catalog{docker: docker},
		InventoryPath: jf.inventory,
		Image:         jf.image,
		Options:       opts,
		LogPath:       jf.logFile,
		Logger:        log,
		WriteReport: func(r *orchestrator.Report) (string, error) {
			name := fmt.Sprintf("layercast-report-%s.json", r.JobID)
			b, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				return "", fmt.Errorf("encode report: %w", err)
			}
			if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
				return "", fmt.Errorf("write report: %w", err)
			}
			return name, nil
		},
	})
}

// catalog answers the console's questions about inventories and the
// bastion's images.
type catalog struct {
	docker *client.Client
}

func (c catalog) LoadInventory(path string) (tui.Inventory, error) {
	inv, err := inventory.Load(path)
	if err != nil {
		return tui.Inventory{}, err
	}
	out := tui.Inventory{Path: path, Ignored: inv.Ignored}
	for _, h := range inv.Hosts {
		out.Hosts = append(out.Hosts, tui.InventoryHost{Name: h.Name, Address: h.Address, Groups: h.Groups, Labels: h.Labels})
	}
	for g := range inv.Groups {
		out.Groups = append(out.Groups, g)
	}
	sort.Strings(out.Groups)
	return out, nil
}

// maxListedImages bounds the inspections the image list costs.
const maxListedImages = 200

func (c catalog) Images(ctx context.Context) ([]tui.Image, error) {
	if c.docker == nil {
		return nil, errors.New("this machine has no usable Docker client (DOCKER_HOST)")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	list, err := c.docker.ImageList(ctx, image.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the bastion's images: %w", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Created > list[j].Created })
	var out []tui.Image
	for _, s := range list {
		if len(out) >= maxListedImages {
			break
		}
		for _, ref := range s.RepoTags {
			if ref == "<none>:<none>" {
				continue
			}
			layers := 0
			if insp, err := c.docker.ImageInspect(ctx, s.ID); err == nil {
				layers = len(insp.RootFS.Layers)
			}
			out = append(out, tui.Image{Ref: ref, ID: s.ID, Size: s.Size, Layers: layers})
		}
	}
	return out, nil
}

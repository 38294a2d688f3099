package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/layercast/layercast/testbed"
	"github.com/spf13/cobra"
)

func newImageCmd() *cobra.Command {
	var tag, size, base string
	var layers, baseLayers int
	var out string
	cmd := &cobra.Command{
		Use:   "image -t TAG --size SIZE --layers N [--base SIZE]",
		Short: "Generate a test image, load it into the bastion and push it to the lab registry",
		Long: `Generate a valid image without docker build or network: pseudo-random layer
content that does not compress and a tiny static entrypoint that prints a line.
It is loaded into the bastion's daemon and, when the lab has a registry, pushed
there as REGISTRY/TAG. With --base, the first --base-layers layers (holding
--base bytes) depend only on their size, so images with the same base share
them; "testbed preload" puts them on chosen hosts.

With --out FILE, only write the docker-save archive (no lab needed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec := testbed.ImageSpec{Tag: tag, Layers: layers, BaseLayers: baseLayers}
			var err error
			if spec.Size, err = testbed.ParseSize(size); err != nil {
				return err
			}
			if base != "" {
				if spec.BaseSize, err = testbed.ParseSize(base); err != nil {
					return err
				}
			}
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				info, err := testbed.WriteImage(f, spec)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return err
				}
				fmt.Printf("%s %s %d bytes\n", info.Tag, info.ID, info.Bytes)
				return nil
			}
			lab, err := testbed.Open(labName(cmd))
			if err != nil {
				return err
			}
			start := time.Now()
			img, err := lab.MakeImage(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "image %s (%d layers, %d bytes) ready in %s\n",
				img.Tag, len(img.DiffIDs), img.Bytes, time.Since(start).Round(time.Millisecond))
			fmt.Printf("%s %s\n", img.Tag, img.ID)
			if img.RegistryRef != "" {
				fmt.Printf("%s %s\n", img.RegistryRef, img.ID)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&tag, "tag", "t", "lab/app:v1", "image tag")
	f.StringVar(&size, "size", "100MB", "total size of the layers' files")
	f.IntVar(&layers, "layers", 5, "number of layers (base layers included)")
	f.StringVar(&base, "base", "", "bytes of --size in base layers shared with other images on the same base")
	f.IntVar(&baseLayers, "base-layers", 0, "number of base layers (default 1 with --base)")
	f.StringVar(&out, "out", "", "only write the archive to this file")
	return cmd
}

func newPreloadCmd() *cobra.Command {
	var hosts, baseOf string
	cmd := &cobra.Command{
		Use:   "preload --base-of TAG --hosts h01,h02",
		Short: "Load an image's base layers into chosen hosts' daemons (for dedup tests)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := testbed.Open(labName(cmd))
			if err != nil {
				return err
			}
			list := lab.Hosts()
			if hosts != "all" {
				list = strings.Split(hosts, ",")
			}
			return lab.Preload(cmd.Context(), baseOf, list...)
		},
	}
	cmd.Flags().StringVar(&hosts, "hosts", "", "comma-separated hosts, or all")
	cmd.Flags().StringVar(&baseOf, "base-of", "", "image made with testbed image --base")
	_ = cmd.MarkFlagRequired("hosts")
	_ = cmd.MarkFlagRequired("base-of")
	return cmd
}

func newMeasureRateCmd() *cobra.Command {
	var seconds float64
	cmd := &cobra.Command{
		Use:   "measure-rate FROM TO",
		Short: "Measure one bulk TCP stream between two lab machines (traffic stays in the lab)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := testbed.Open(labName(cmd))
			if err != nil {
				return err
			}
			d := time.Duration(seconds * float64(time.Second))
			bps, err := lab.MeasureRate(cmd.Context(), args[0], args[1], time.Second, d)
			if err != nil {
				return err
			}
			fmt.Printf("%s -> %s: %.1f Mbit/s over %s\n", args[0], args[1], bps/1e6, d)
			return nil
		},
	}
	cmd.Flags().Float64Var(&seconds, "seconds", 5, "measuring time after a 1 s warm-up")
	return cmd
}

func newFaultCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Inject a fault into a lab host",
	}
	simple := func(use, short string, fn func(*testbed.Lab, *cobra.Command, string) error) *cobra.Command {
		return &cobra.Command{
			Use:   use + " HOST",
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				lab, err := testbed.Open(labName(cmd))
				if err != nil {
					return err
				}
				return fn(lab, cmd, args[0])
			},
		}
	}
	var factor float64
	slow := simple("slow-link", "Divide a machine's link rate, both ways, by --factor",
		func(l *testbed.Lab, c *cobra.Command, h string) error { return l.SlowLink(c.Context(), h, factor) })
	slow.Flags().Float64Var(&factor, "factor", 10, "rate divisor")
	var free string
	fill := simple("fill-disk", "Put a nearly full 64 MiB tmpfs over a host's /tmp",
		func(l *testbed.Lab, c *cobra.Command, h string) error {
			n, err := testbed.ParseSize(free)
			if err != nil {
				return err
			}
			return l.FillDisk(c.Context(), h, n)
		})
	fill.Flags().StringVar(&free, "free", "64KiB", "bytes left free")
	cmd.AddCommand(
		simple("kill-host", "Kill every process of a host (sshd, dockerd, sessions)",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.KillHost(c.Context(), h) }),
		simple("cut-link", "Take a machine's link down",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.CutLink(c.Context(), h) }),
		simple("heal-link", "Bring a machine's link back up at the lab rate",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.HealLink(c.Context(), h) }),
		slow, fill,
		simple("clear-disk", "Undo fill-disk",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.ClearDisk(c.Context(), h) }),
		simple("stop-containerd", "Stop a containerd host's containerd",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StopContainerd(c.Context(), h) }),
		simple("start-containerd", "Start a containerd host's containerd again",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StartContainerd(c.Context(), h) }),
		simple("stop-docker", "Stop a host's dockerd",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StopDocker(c.Context(), h) }),
		simple("start-docker", "Start a host's dockerd again",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StartDocker(c.Context(), h) }),
		simple("stop-sshd", "Stop a host's sshd listener",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StopSSHD(c.Context(), h) }),
		simple("start-sshd", "Start a host's sshd again",
			func(l *testbed.Lab, c *cobra.Command, h string) error { return l.StartSSHD(c.Context(), h) }),
	)
	return cmd
}

package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/layercast/layercast/testbed"
	"github.com/layercast/layercast/testbed/bench"
	"github.com/spf13/cobra"
)

func newBenchCmd() *cobra.Command {
	var (
		sizes, hosts, modes []string
		cfg                 bench.Config
		budget              time.Duration
		from                string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Reproduce the DID experiment: registry pull against layercast P2P, by image and cluster size",
		Long: `bench brings up a lab with the largest cluster size and a registry, every
link shaped to --rate, and runs layercast in each mode for every image size
and cluster size, from clean host daemons each time. It writes results.csv,
results.md and two SVG figures into --out, after every run.

Besides times, every run records: bastion egress ÷ the bytes of the layers
some host lacked; the bytes the bastion sent to the hosts' sshd (node
binary uploads, job specs, control; an iptables counter on TCP port 22);
setup median and max; and the CPU of the lab's processes by kind from
/proc (node, docker = dockerd with docker-untar and containerd, the
bastion's layercast, sshd, registry, other), in CPU-seconds and per GB the
hosts received (layercast per GB its seeder sent), and what a node uses
once its host is done.

  testbed bench --sizes 50,130,250,500,1000 --hosts 5,10,20,40 --rate 200mbit --out bench-out
  testbed bench --rate 1mbit --sizes 50 --hosts 200 --modes p2p --no-single --seed-node-cache   # warm node caches
  testbed bench --rate 1mbit --sizes 50 --hosts 200 --modes p2p --no-single --seed-node-cache --split 2   # two jobs over two halves
  testbed bench --from bench-out/results.csv --out bench-out   # redraw from a CSV`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
				return fmt.Errorf("create output dir: %w", err)
			}
			if from != "" {
				f, err := os.Open(from)
				if err != nil {
					return err
				}
				defer f.Close()
				rs, err := bench.ReadCSV(f)
				if err != nil {
					return err
				}
				rate := cfg.Rate
				if len(rs) > 0 {
					rate = strconv.FormatFloat(float64(rs[0].RateBits)/1e6, 'f', -1, 64) + "mbit"
				}
				return bench.WriteAll(cfg.Out, rs, bench.Setup{Rate: rate, Layers: cfg.Layers})
			}
			var err error
			if cfg.Sizes, err = parseList(sizes, func(s string) (int64, error) {
				if v, err := strconv.ParseFloat(s, 64); err == nil {
					return int64(v * bench.MB), nil // a bare number is MB
				}
				return testbed.ParseSize(s)
			}); err != nil {
				return fmt.Errorf("--sizes: %w", err)
			}
			if cfg.Hosts, err = parseList(hosts, strconv.Atoi); err != nil {
				return fmt.Errorf("--hosts: %w", err)
			}
			cfg.Modes = modes
			if budget > 0 {
				cfg.Deadline = time.Now().Add(budget)
			}
			if cfg.Bin == "" {
				cfg.Bin = defaultLayercast()
			}
			cfg.Log = slog.Default()
			rs, err := bench.Run(cmd.Context(), cfg)
			fmt.Fprintf(os.Stderr, "%d runs written to %s\n", len(rs), cfg.Out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&sizes, "sizes", []string{"50", "130", "250", "500", "1000"}, "image sizes, MB unless a unit is given")
	f.StringSliceVar(&hosts, "hosts", []string{"5", "10", "20", "40"}, "cluster sizes")
	f.StringSliceVar(&modes, "modes", []string{bench.ModeP2P, bench.ModeRegistry}, "modes to run: p2p, registry")
	f.StringVar(&cfg.Rate, "rate", "200mbit", "rate of every link, both ways (tc notation)")
	f.StringVar(&cfg.CongestionControl, "cc", testbed.DefaultCongestionControl, ccUsage)
	f.IntVar(&cfg.Layers, "layers", 5, "layers per image")
	f.StringVar(&cfg.MaxRate, "max-rate", "", "layercast's --max-rate in every run, e.g. 0.9mbit (default: none)")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 0, "layercast's --connect-timeout in every run (default: layercast's)")
	f.StringVar(&cfg.Out, "out", "bench-out", "output directory")
	f.StringVar(&cfg.Bin, "layercast", "", "layercast binary (default: bin/layercast next to this binary, or on PATH)")
	f.StringVar(&cfg.LabName, "lab", "bench", "name of the lab the bench brings up")
	f.BoolVar(&cfg.NoSingle, "no-single", false, "skip the single-host P2P runs (time(1) of the scaling column)")
	f.BoolVar(&cfg.WarmNodeCache, "warm-node-cache", false, "keep the hosts' node caches between runs (a fleet's second job); by default every run starts cold")
	f.BoolVar(&cfg.SeedNodeCache, "seed-node-cache", false, "before every run, place the node binary in every host's node cache as a previous job leaves it, and check that every host takes it from there (a fleet's second job, without running the first); excludes --warm-node-cache")
	f.IntVar(&cfg.Split, "split", 1, "run every run of more than one host as this many layercast jobs at once from the bastion, over equal groups of its hosts in order; one CSV row per job and one for the whole run")
	f.BoolVar(&cfg.Perf, "perf", false, "sample the whole machine with perf during every run and write, per process kind, how its CPU divides between its own code, the kernel on its behalf and the interrupts it happened to run (perf/RUN.md; needs perf)")
	f.DurationVar(&budget, "budget", 0, "start no new run after this long (0: no limit); what finished is written")
	f.StringVar(&from, "from", "", "only redraw tables and figures from this results.csv")
	return cmd
}

func parseList[T any](items []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, it := range items {
		v, err := parse(strings.TrimSpace(it))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// defaultLayercast finds the layercast binary next to this one (make
// builds both into bin/), else on PATH.
func defaultLayercast() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "layercast")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("layercast"); err == nil {
		return p
	}
	return filepath.Join("bin", "layercast")
}

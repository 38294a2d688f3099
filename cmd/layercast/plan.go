package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

func newPlanCmd() *cobra.Command {
	var jf jobFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan -i INVENTORY [--group G | --hosts a,b] IMAGE",
		Short: "Show what a run would move, host by host, without changing anything",
		Long: `plan connects to every selected host and reports whether it is reachable,
its architecture, whether docker is usable (directly or through sudo), which
layers of IMAGE it already has and how many bytes it still needs, and
whether its node cache (~/.cache/layercast of the login user) holds this
layercast's node binary already ("cached": nothing to send; "empty": the
job sends it and keeps it there; "off": node_cache: false or
--no-node-cache). It writes no file on any host. The totals line gives the bytes the whole job will move
and the number of hosts already up to date.

Exit codes: 0 every host is reachable and usable; 1 some are not; 2 bad
usage, inventory or image.`,
		Example: `  layercast plan -i inventory.yaml app:v2
  layercast plan -i hosts.ini --group web --json app:v2`,
		Args: exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			jf.image = args[0]
			return runPlan(cmd, &jf, asJSON)
		},
	}
	jf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the plan as JSON")
	return cmd
}

func runPlan(cmd *cobra.Command, jf *jobFlags, asJSON bool) error {
	opts, eng, _, done, err := jf.setup()
	if err != nil {
		return err
	}
	defer done()
	p, err := eng.Plan(cmd.Context(), opts)
	if err != nil {
		return exitFor(cmd.Context(), nil, err)
	}
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(p); err != nil {
			return fmt.Errorf("write plan: %w", err)
		}
	} else {
		writePlan(cmd.OutOrStdout(), p)
	}
	bad := 0
	for _, h := range p.Hosts {
		if h.Error != "" {
			bad++
		}
	}
	if bad > 0 {
		return &exitCodeError{code: exitFailed, err: fmt.Errorf("%d of %d hosts cannot take part", bad, len(p.Hosts))}
	}
	return nil
}

func writePlan(w io.Writer, p *orchestrator.Plan) {
	if len(p.Platforms) > 1 {
		fmt.Fprintf(w, "%s from the %s (%s in %d layer files over %d platforms)\n", p.Image, p.Source, textfmt.Bytes(p.Size), p.Layers, len(p.Platforms))
		for _, pi := range p.Platforms {
			fmt.Fprintf(w, "  %s: %s, %s\n", pi.Platform, pi.ImageID, textfmt.Bytes(pi.Size))
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintf(w, "%s from the %s (%s, %d layers, %s)\n\n", p.Image, p.Source, textfmt.Bytes(p.Size), p.Layers, p.ImageID)
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tREACHABLE\tPLATFORM\tRUNTIME\tDOCKER\tNODE BINARY\tLAYERS PRESENT\tNEEDS\tNOTE")
	for _, h := range p.Hosts {
		reach := "yes"
		if !h.Reachable {
			reach = "no"
		}
		note := textfmt.OneLine(h.Error)
		if h.UpToDate {
			note = "up to date"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", h.Host, reach, dash(cmp.Or(h.Platform, h.Arch)), dash(h.Runtime), dash(h.Docker), dash(h.NodeCache), h.LayersPresent, h.Layers, textfmt.Bytes(h.Needs), note)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ntotal: %s to move to %d hosts; %d already up to date\n", textfmt.Bytes(p.Bytes), len(p.Hosts), p.UpToDate)
	if len(p.Ignored) > 0 {
		fmt.Fprintln(w, "\nthe inventory holds what layercast does not use:")
		for _, l := range p.Ignored {
			fmt.Fprintf(w, "  ignored: %s\n", textfmt.OneLine(l))
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// exactArgs is cobra.ExactArgs with a message that names the argument and
// exits 2.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErr(fmt.Errorf("%s takes %s, got %d arguments", cmd.Name(), what, len(args)))
		}
		return nil
	}
}

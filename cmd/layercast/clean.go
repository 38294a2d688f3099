package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
)

func newCleanCmd() *cobra.Command {
	var jf jobFlags
	var asJSON, keepCache bool
	cmd := &cobra.Command{
		Use:   "clean -i INVENTORY [--group G | --hosts a,b]",
		Short: "Remove what layercast keeps or left on the hosts",
		Long: `clean connects to every selected host and removes what layercast keeps
there between jobs, the node binaries in the node cache
(~/.cache/layercast of the login user), and what ended jobs left behind:
work dirs (layercast-* in /tmp, /var/tmp, the login user's cache dir or the
inventory's work_dir), nodes still running from them, temporary
images (layercast-tmp:*). A job still running on a host is left alone. Use
--keep-node-cache to remove only the leftovers.

Exit codes: 0 every host is clean; 1 some hosts could not be cleaned; 2 bad
usage or inventory.`,
		Example: `  layercast clean -i inventory.yaml
  layercast clean -i hosts.ini --group web --keep-node-cache`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 {
				return usageErr(fmt.Errorf("clean takes no arguments, got %q", args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, eng, _, done, err := jf.setup()
			if err != nil {
				return err
			}
			defer done()
			res, err := eng.Clean(cmd.Context(), opts, keepCache)
			if err != nil {
				return exitFor(cmd.Context(), nil, err)
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return fmt.Errorf("write result: %w", err)
				}
			} else {
				writeClean(cmd.OutOrStdout(), res)
			}
			bad := 0
			for _, h := range res {
				if h.Error != "" {
					bad++
				}
			}
			if bad > 0 {
				return &exitCodeError{code: exitFailed, err: fmt.Errorf("%d of %d hosts could not be cleaned", bad, len(res))}
			}
			return nil
		},
	}
	jf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	cmd.Flags().BoolVar(&keepCache, "keep-node-cache", false, "keep the node binaries in the hosts' node cache")
	return cmd
}

func writeClean(w io.Writer, res []orchestrator.HostClean) {
	for _, h := range res {
		var parts []string
		add := func(what string, items []string) {
			if len(items) > 0 {
				parts = append(parts, fmt.Sprintf("%s %s", what, strings.Join(items, " ")))
			}
		}
		add("removed work dirs", h.WorkDirs)
		add("removed temporary images", h.TempImages)
		add("removed node binaries", h.NodeCache)
		add("left alone (job still running)", h.Live)
		line := strings.Join(parts, "; ")
		switch {
		case h.Error != "":
			line = "error: " + textfmt.OneLine(h.Error) + prefixed("; ", line)
		case line == "":
			line = "nothing to remove"
		}
		fmt.Fprintf(w, "%s: %s\n", h.Host, line)
	}
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

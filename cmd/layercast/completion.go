package main

import (
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/layercast/layercast/orchestrator/inventory"
)

// newCompletionCmd is the `completion` command: shell scripts for bash,
// zsh, fish and powershell, written to the command's output. (Cobra adds
// one by itself at Execute; this one has examples and honours SetOut.)
func newCompletionCmd() *cobra.Command {
	comp := &cobra.Command{
		Use:   "completion SHELL",
		Short: "Print the shell completion script for bash, zsh, fish or powershell",
		Long: `completion prints a script that makes your shell complete layercast's
commands and flags, the values of --mode, and host and group names from the
inventory that -i names. The bash script needs the bash-completion package
(Debian: apt install bash-completion).`,
		Example: `  source <(layercast completion bash)                           # this bash session
  layercast completion bash > /etc/bash_completion.d/layercast  # every bash session
  layercast completion zsh > "${fpath[1]}/_layercast"           # zsh (compinit on)
  layercast completion fish > ~/.config/fish/completions/layercast.fish`,
		Args: cobra.NoArgs,
	}
	for _, sh := range []struct {
		name, install string
		gen           func(root *cobra.Command, w io.Writer) error
	}{
		{"bash", "source <(layercast completion bash)", func(r *cobra.Command, w io.Writer) error { return r.GenBashCompletionV2(w, true) }},
		{"zsh", `layercast completion zsh > "${fpath[1]}/_layercast"`, func(r *cobra.Command, w io.Writer) error { return r.GenZshCompletion(w) }},
		{"fish", "layercast completion fish > ~/.config/fish/completions/layercast.fish", func(r *cobra.Command, w io.Writer) error { return r.GenFishCompletion(w, true) }},
		{"powershell", "layercast completion powershell | Out-String | Invoke-Expression", func(r *cobra.Command, w io.Writer) error { return r.GenPowerShellCompletionWithDesc(w) }},
	} {
		comp.AddCommand(&cobra.Command{
			Use:               sh.name,
			Short:             "Print the completion script for " + sh.name,
			Example:           "  " + sh.install,
			Args:              cobra.NoArgs,
			ValidArgsFunction: cobra.NoFileCompletions,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return sh.gen(cmd.Root(), cmd.OutOrStdout())
			},
		})
	}
	return comp
}

// registerCompletions completes --mode with its values, and --hosts and
// --group with the names in the inventory that -i names.
func (f *jobFlags) registerCompletions(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions(
		[]cobra.Completion{"p2p", "registry", "auto"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("hosts", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		inv, err := inventory.Load(f.inventory)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var names []cobra.Completion
		for _, h := range inv.Hosts {
			names = append(names, h.Name)
		}
		return listCompletion(names, toComplete)
	})
	_ = cmd.RegisterFlagCompletionFunc("group", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		inv, err := inventory.Load(f.inventory)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names := []cobra.Completion{"all"}
		for g := range inv.Groups {
			if g != "all" {
				names = append(names, g)
			}
		}
		slices.Sort(names)
		return listCompletion(names, toComplete)
	})
}

// listCompletion completes the next item of a comma-separated list: with
// "h01,h0" typed, it offers "h01,h02", "h01,h03", ... Names already in the
// list are left out.
func listCompletion(names []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	prefix, taken := "", []string(nil)
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		prefix = toComplete[:i+1]
		taken = strings.Split(toComplete[:i], ",")
	}
	var out []cobra.Completion
	for _, n := range names {
		if !slices.Contains(taken, n) {
			out = append(out, prefix+n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

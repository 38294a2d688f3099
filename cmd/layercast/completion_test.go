package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestCompletion_WritesAScriptForBashZshAndFish(t *testing.T) {
	for _, tc := range []struct {
		shell string
		marks []string
		check []string // a syntax check, run when the shell is installed
	}{
		{"bash", []string{"__start_layercast", "complete -o default -F __start_layercast layercast"}, []string{"bash", "-n"}},
		{"zsh", []string{"#compdef layercast", "compdef _layercast layercast"}, []string{"zsh", "-n"}},
		{"fish", []string{"complete -c layercast", "__layercast_perform_completion"}, []string{"fish", "--no-execute"}},
	} {
		t.Run(tc.shell, func(t *testing.T) {
			out, _, err := execute(t, "completion", tc.shell)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.marks {
				if !strings.Contains(out, m) {
					t.Errorf("%s script lacks %q", tc.shell, m)
				}
			}
			sh, err := exec.LookPath(tc.check[0])
			if err != nil {
				t.Logf("%s not installed: script not syntax-checked", tc.check[0])
				return
			}
			f := filepath.Join(t.TempDir(), "layercast."+tc.shell)
			if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if msg, err := exec.Command(sh, append(tc.check[1:], f)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", tc.shell, err, msg)
			}
		})
	}
}

// complete asks the command for completions as the shell scripts do, via
// cobra's hidden __complete command, and returns the candidates.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, _, err := execute(t, append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("__complete %q: %v", args, err)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, ":") || l == "" { // the directive line
			continue
		}
		got = append(got, strings.SplitN(l, "\t", 2)[0])
	}
	return got
}

func completionInventory(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	inv := `hosts:
  - {name: h01, address: 10.0.0.1}
  - {name: h02, address: 10.0.0.2}
  - {name: h03, address: 10.0.0.3}
groups:
  web: [h01, h02]
  db: [h03]
`
	if err := os.WriteFile(path, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompletion_CompletesCommandsFlagsAndValues(t *testing.T) {
	inv := completionInventory(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"completion", "plan", "run", "version"}},
		{[]string{"run", "--js"}, []string{"--json"}},
		{[]string{"plan", "--mo"}, []string{"--mode"}},
		{[]string{"run", "--mode", ""}, []string{"p2p", "registry", "auto"}},
		{[]string{"run", "-i", inv, "--hosts", ""}, []string{"h01", "h02", "h03"}},
		{[]string{"run", "-i", inv, "--hosts", "h02,"}, []string{"h02,h01", "h02,h03"}},
		{[]string{"plan", "-i", inv, "--group", ""}, []string{"all", "db", "web"}},
		{[]string{"completion", ""}, []string{"bash", "fish", "powershell", "zsh"}},
	} {
		got := complete(t, tc.args...)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("complete %q: got %q, want %q among them", tc.args, got, w)
			}
		}
		if tc.args[len(tc.args)-1] == "h02," && slices.Contains(got, "h02,h02") {
			t.Errorf("complete %q offers a host already listed: %q", tc.args, got)
		}
	}
	// A missing inventory completes nothing rather than failing.
	if got := complete(t, "run", "-i", filepath.Join(t.TempDir(), "none.yaml"), "--hosts", ""); len(got) != 0 {
		t.Errorf("hosts of a missing inventory: %q", got)
	}
}

// TestCompletion_BashCompletesThroughTheBuiltBinary loads the bash script
// into a real bash and completes `layercast run --mode ` with the binary
// make built (LAYERCAST_BIN).
func TestCompletion_BashCompletesThroughTheBuiltBinary(t *testing.T) {
	bin := os.Getenv("LAYERCAST_BIN")
	bash, err := exec.LookPath("bash")
	if bin == "" || err != nil {
		t.Skip("needs LAYERCAST_BIN (make test) and bash")
	}
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "layercast")); err != nil {
		t.Fatal(err)
	}
	// The script needs the bash-completion package; without it, a minimal
	// stand-in for the one function it uses.
	script := `if [ -r /usr/share/bash-completion/bash_completion ]; then
  source /usr/share/bash-completion/bash_completion
else
  _get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
fi
source <(layercast completion bash)
COMP_WORDS=(layercast run --mode "")
COMP_CWORD=3
COMP_LINE="layercast run --mode "
COMP_POINT=${#COMP_LINE}
__start_layercast
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	// compopt complains on stderr outside a real completion; only the
	// candidates on stdout count.
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, stderr.String())
	}
	got := strings.Fields(string(out))
	slices.Sort(got)
	if !slices.Equal(got, []string{"auto", "p2p", "registry"}) {
		t.Errorf("bash completed %q, want auto p2p registry", got)
	}
}

package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// ciCommand is one `layercast ...` command line found in a CI file.
type ciCommand struct {
	where string   // job and step, for messages
	args  []string // after "layercast", quotes removed, variables as written
}

// shellCommands splits a shell script into simple commands, each as its
// words with quotes removed. It knows what CI scripts use: quotes, \
// continuations, comments, $(...), ; && || | &, redirections (dropped with
// their target) and leading VAR=value assignments. Variables stay as
// written.
func shellCommands(script string) ([][]string, error) {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var (
		cmds      [][]string
		words     []string
		cur       strings.Builder
		inWord    bool
		quote     byte
		depth     int  // inside $( ... )
		redirect  bool // the next word is a redirection target
		skipToEOL bool
	)
	endWord := func() {
		if !inWord {
			return
		}
		w := cur.String()
		cur.Reset()
		inWord = false
		if redirect {
			redirect = false
			return
		}
		words = append(words, w)
	}
	endCmd := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case skipToEOL:
			if c == '\n' {
				skipToEOL = false
				endCmd()
			}
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				if c == '\\' && quote == '"' && i+1 < len(script) && strings.IndexByte("\"\\$`", script[i+1]) >= 0 {
					i++
					c = script[i]
				}
				cur.WriteByte(c)
			}
		case depth > 0:
			cur.WriteByte(c)
			switch c {
			case '(':
				depth++
			case ')':
				depth--
			}
		case c == '$' && i+1 < len(script) && script[i+1] == '(':
			cur.WriteString("$(")
			i++
			depth, inWord = 1, true
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '#' && !inWord:
			skipToEOL = true
		case c == ' ' || c == '\t':
			endWord()
		case c == '\n' || c == ';' || c == '|' || c == '&':
			// A digit word just before > or < is a file descriptor.
			endCmd()
		case c == '>' || c == '<':
			if inWord && strings.Trim(cur.String(), "0123456789") == "" {
				cur.Reset()
				inWord = false
			} else {
				endWord()
			}
			for i+1 < len(script) && (script[i+1] == '>' || script[i+1] == '&') {
				i++
			}
			redirect = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if depth != 0 {
		return nil, fmt.Errorf("unterminated $(")
	}
	endCmd()
	return cmds, nil
}

// layercastCommands finds the layercast invocations of a script: a word
// named layercast (any directory) where a command starts, after
// assignments and the shell words that may precede a command.
func layercastCommands(where, script string) ([]ciCommand, error) {
	cmds, err := shellCommands(script)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var out []ciCommand
	for _, words := range cmds {
		i := 0
		for i < len(words) && (slices.Contains([]string{"if", "then", "else", "elif", "do", "while", "until", "!", "time", "exec", "command"}, words[i]) ||
			(strings.Contains(words[i], "=") && !strings.HasPrefix(words[i], "-") && !strings.HasPrefix(words[i], "="))) {
			i++
		}
		if i < len(words) && path.Base(words[i]) == "layercast" {
			out = append(out, ciCommand{where: where, args: words[i+1:]})
		}
	}
	return out, nil
}

// checkCommand checks a command line against the real command tree: the
// subcommand exists, every flag exists on it and parses, and the
// positional arguments fit.
func checkCommand(args []string) error {
	root := newRootCmd()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return fmt.Errorf("no such command: %w", err)
	}
	if cmd == root {
		return fmt.Errorf("no subcommand in %q", args)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	return nil
}

func readYAML(t *testing.T, file string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return doc
}

// githubCommands reads the run: scripts of every step of every job.
func githubCommands(t *testing.T, file string) []ciCommand {
	t.Helper()
	doc := readYAML(t, file)
	jobs, ok := doc["jobs"].(map[string]any)
	if !ok || len(jobs) == 0 {
		t.Fatalf("%s: no jobs", file)
	}
	var out []ciCommand
	for name, j := range jobs {
		job, _ := j.(map[string]any)
		steps, ok := job["steps"].([]any)
		if !ok {
			t.Fatalf("%s: job %s has no steps", file, name)
		}
		for i, s := range steps {
			step, _ := s.(map[string]any)
			if _, isAction := step["uses"]; isAction {
				continue
			}
			run, ok := step["run"].(string)
			if !ok {
				t.Fatalf("%s: job %s step %d has neither run: nor uses:", file, name, i+1)
			}
			where := fmt.Sprintf("%s: job %s, step %d (%v)", filepath.Base(file), name, i+1, step["name"])
			cmds, err := layercastCommands(where, run)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, cmds...)
		}
	}
	return out
}

// gitlabCommands reads before_script, script and after_script of every job
// (and of default:).
func gitlabCommands(t *testing.T, file string) []ciCommand {
	t.Helper()
	doc := readYAML(t, file)
	var out []ciCommand
	for name, j := range doc {
		job, ok := j.(map[string]any)
		if !ok {
			continue
		}
		for _, key := range []string{"before_script", "script", "after_script"} {
			var lines []string
			switch v := job[key].(type) {
			case nil:
				continue
			case string:
				lines = []string{v}
			case []any:
				for _, l := range v {
					s, ok := l.(string)
					if !ok {
						t.Fatalf("%s: %s.%s holds a %T", file, name, key, l)
					}
					lines = append(lines, s)
				}
			default:
				t.Fatalf("%s: %s.%s is a %T", file, name, key, v)
			}
			for i, l := range lines {
				where := fmt.Sprintf("%s: %s.%s[%d]", filepath.Base(file), name, key, i)
				cmds, err := layercastCommands(where, l)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, cmds...)
			}
		}
	}
	return out
}

// flagsOf lists the flag names a command line uses.
func flagsOf(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			out = append(out, strings.SplitN(a, "=", 2)[0])
		}
	}
	return out
}

func checkExamples(t *testing.T, cmds []ciCommand) {
	t.Helper()
	var runFlags []string
	subs := map[string]bool{}
	for _, c := range cmds {
		if err := checkCommand(c.args); err != nil {
			t.Errorf("%s: layercast %s: %v", c.where, strings.Join(c.args, " "), err)
			continue
		}
		t.Logf("%s: layercast %s", c.where, strings.Join(c.args, " "))
		if len(c.args) > 0 {
			subs[c.args[0]] = true
			if c.args[0] == "run" {
				runFlags = append(runFlags, flagsOf(c.args)...)
			}
		}
	}
	// What the examples are there to show.
	for _, s := range []string{"run", "plan", "version"} {
		if !subs[s] {
			t.Errorf("no `layercast %s` in the example", s)
		}
	}
	for _, f := range []string{"--json", "--report", "--summary", "--timeout", "--retry-failed"} {
		if !slices.Contains(runFlags, f) {
			t.Errorf("no `layercast run` in the example uses %s", f)
		}
	}
}

func TestExamples_GitHubActionsWorkflowRunsRealCommandsAndFlags(t *testing.T) {
	checkExamples(t, githubCommands(t, "../../examples/github-actions.yml"))
}

func TestExamples_GitLabCIJobRunsRealCommandsAndFlags(t *testing.T) {
	checkExamples(t, gitlabCommands(t, "../../examples/gitlab-ci.yml"))
}

// TestExamples_CheckerCatchesWrongCommands: the checks above would fail on
// a misspelt flag, a flag of another command, a missing subcommand or a
// missing image.
func TestExamples_CheckerCatchesWrongCommands(t *testing.T) {
	for _, script := range []string{
		`layercast run --jsn -i inv.yaml app:v1`,
		`layercast plan -i inv.yaml --report r.json app:v1`,
		`layercast deploy -i inv.yaml app:v1`,
		`layercast run -i inv.yaml --timeout soon app:v1`,
		`layercast run -i inv.yaml --json`,
		`set +e; FOO=1 layercast run -i inv.yaml \` + "\n" + `  --summary "$GITHUB_STEP_SUMMARY" --bogus app:v1 > out.jsonl`,
	} {
		cmds, err := layercastCommands("test", script)
		if err != nil || len(cmds) != 1 {
			t.Errorf("%q: found %d commands (%v), want 1", script, len(cmds), err)
			continue
		}
		if err := checkCommand(cmds[0].args); err == nil {
			t.Errorf("%q passed the check", script)
		}
	}
}

func TestExamples_ShellSplitting(t *testing.T) {
	script := `set -eu
arch=$(uname -m | sed 's/x86_64/amd64/') # comment; layercast run --nope
install -m 0755 "layercast-linux-$arch" "$DIR/layercast"
code=0; "$DIR/layercast" run -i "$INV" \
  --summary "$GITHUB_STEP_SUMMARY" 2>&1 "$IMAGE" > "events 1.jsonl" && echo ok
if layercast plan -i 'a b.yaml' x; then echo "layercast version"; fi`
	cmds, err := layercastCommands("test", script)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cmds {
		got = append(got, strings.Join(c.args, "|"))
	}
	want := []string{`run|-i|$INV|--summary|$GITHUB_STEP_SUMMARY|$IMAGE`, `plan|-i|a b.yaml|x`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// What a process kind's CPU samples were doing, from a whole-machine
// profile (`perf record -a -g`). /proc tells how much CPU a kind used; it
// cannot tell how much of it was the kind's own work. With the lab's
// tick-based accounting, a soft interrupt taken while a process runs is
// charged to that process: the network stack carrying the lab's links
// (veth, bridge, HTB) lands on whichever node or daemon happened to be on
// the CPU, often to deliver another machine's packets.
const (
	inUser    = "user"    // the program's own code
	inKernel  = "kernel"  // system calls and faults on its behalf
	inSoftirq = "softirq" // interrupts it happened to run
)

// perfKind is the kind of a perf sample's command name. perf knows no
// network namespaces, so it goes by the name alone: the bastion's dockerd
// counts as docker, and the bench itself as other.
func perfKind(comm string) string {
	switch comm {
	case "exe":
		// dockerd re-executes itself (/proc/self/exe) to unpack layers
		// (docker-untar, docker-applyLayer); perf shows the kernel's
		// command name, which is the executable's.
		return KindDocker
	case "swapper":
		return "idle" // interrupts taken while a CPU idled
	}
	for _, k := range []string{"kworker", "ksoftirqd", "kswapd", "kcompactd", "kdamond", "khugepaged", "jbd2", "rcu_", "migration"} {
		if strings.HasPrefix(comm, k) {
			return KindKernel
		}
	}
	return kindOfName(comm)
}

// perfSplit counts samples by kind and by what they were doing.
type perfSplit map[string]map[string]int

// parsePerfScript reads `perf script -F comm,tid,ip,sym` output: per
// sample a line "comm tid", then its call chain, innermost frame first, one
// "address symbol" per indented line, then a blank line.
func parsePerfScript(r io.Reader) (perfSplit, error) {
	out := perfSplit{}
	var comm string
	var frames []string // address and symbol of each frame
	flush := func() {
		if comm == "" {
			return
		}
		k := perfKind(comm)
		if out[k] == nil {
			out[k] = map[string]int{}
		}
		out[k][sampleState(frames)]++
		comm, frames = "", frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			frames = append(frames, strings.TrimSpace(line))
		default:
			flush()
			// The command name may hold spaces; the thread id is last.
			f := strings.TrimSpace(line)
			if i := strings.LastIndexAny(f, " \t"); i > 0 {
				f = strings.TrimSpace(f[:i])
			}
			comm = f
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read perf script: %w", err)
	}
	return out, nil
}

// sampleState says what one sample was doing from its call chain: inside
// a soft interrupt wherever one is on the stack; otherwise in the kernel
// when its innermost frame is a kernel address; otherwise in user code.
func sampleState(frames []string) string {
	for _, f := range frames {
		_, sym, _ := strings.Cut(f, " ")
		for _, s := range []string{"handle_softirqs", "__do_softirq", "do_softirq", "net_rx_action", "net_tx_action"} {
			if sym == s {
				return inSoftirq
			}
		}
	}
	if len(frames) > 0 {
		addr, _, _ := strings.Cut(frames[0], " ")
		if v, err := strconv.ParseUint(addr, 16, 64); err == nil && v >= 0xffff800000000000 {
			return inKernel
		}
	}
	return inUser
}

// table writes the split as markdown: per kind its share of all samples
// and how its own samples divide.
func (s perfSplit) table(w io.Writer) {
	total := 0
	for _, by := range s {
		for _, n := range by {
			total += n
		}
	}
	if total == 0 {
		fmt.Fprintln(w, "no perf samples")
		return
	}
	kinds := make([]string, 0, len(s))
	for k := range s {
		kinds = append(kinds, k)
	}
	sum := func(k string) int {
		n := 0
		for _, v := range s[k] {
			n += v
		}
		return n
	}
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Compare(sum(b), sum(a)) })
	fmt.Fprintln(w, "| kind | share of samples | user | kernel | softirq |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
	for _, k := range kinds {
		n := sum(k)
		pct := func(state string) float64 { return 100 * float64(s[k][state]) / float64(n) }
		fmt.Fprintf(w, "| %s | %.1f %% | %.1f %% | %.1f %% | %.1f %% |\n", k, 100*float64(n)/float64(total), pct(inUser), pct(inKernel), pct(inSoftirq))
	}
	fmt.Fprintf(w, "\n%d samples at 99 Hz per CPU over the whole machine (perf record -a -g), by command name: "+
		"the bastion's dockerd counts as docker and the bench as other. user: the program's own code; kernel: system calls and faults on its behalf; "+
		"softirq: soft interrupts it ran while on the CPU (the network stack carrying the lab's links, often another machine's packets), which /proc charges to it. "+
		"idle: CPUs with nothing to run, and the interrupts they took.\n", total)
}

// perfRecorder samples the whole machine during one run.
type perfRecorder struct {
	cmd    *exec.Cmd
	data   string
	stderr *bytes.Buffer // perf record's complaints, for errors
}

// startPerf starts `perf record` over every CPU, with call chains, into
// data.
func startPerf(ctx context.Context, data string) (*perfRecorder, error) {
	cmd := exec.CommandContext(ctx, "perf", "record", "-a", "-g", "-F", "99", "-q", "-o", data)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 30 * time.Second
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start perf record (--perf needs perf: apt-get install linux-perf): %w", err)
	}
	return &perfRecorder{cmd: cmd, data: data, stderr: stderr}, nil
}

// finish stops the recording, splits its samples and removes the data
// file, which is large and holds nothing the split does not.
func (p *perfRecorder) finish(ctx context.Context) (perfSplit, error) {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	if err := p.cmd.Wait(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) { // perf exits non-zero on SIGINT
			return nil, fmt.Errorf("perf record: %w: %s", err, tail(p.stderr.String()))
		}
	}
	defer os.Remove(p.data)
	cmd := exec.CommandContext(ctx, "perf", "script", "-i", p.data, "-F", "comm,tid,ip,sym")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("perf script: %w", err)
	}
	split, perr := parsePerfScript(out)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		// A recording that failed shows here, as data perf cannot read.
		return nil, fmt.Errorf("perf script: %w (perf record said: %s)", err, tail(p.stderr.String()))
	}
	return split, perr
}

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The comments that tag the bench's accounting rules (no target: they
// only count) in the bastion's iptables OUTPUT and INPUT chains.
const (
	sshRuleComment     = "layercast-bench-ssh"
	sshInRuleComment   = "layercast-bench-ssh-in"
	trackerRuleComment = "layercast-bench-tracker"
	seederRuleComment  = "layercast-bench-seeder"
)

// sshRules count the bytes between the bastion and the hosts' sshd. Out:
// the node binary crosses the bastion's link there, with each host's job
// spec and control lines and the ACKs of what comes in. In: the nodes'
// events (progress lines above all) and the ACKs of what went out.
var sshRules = [][]string{
	{"OUTPUT", "-p", "tcp", "--dport", "22", "-m", "comment", "--comment", sshRuleComment},
	{"INPUT", "-p", "tcp", "--sport", "22", "-m", "comment", "--comment", sshInRuleComment},
}

// portRule counts what the bastion sends from one of a job's listening
// ports (its tracker's or its seeder's): every byte on the wire, TCP/IP
// headers, retransmissions and pure ACKs included.
func portRule(comment string, port int) []string {
	return []string{"OUTPUT", "-p", "tcp", "--sport", strconv.Itoa(port), "-m", "comment", "--comment", comment}
}

// labExec runs a command inside a lab machine (testbed.Lab.Exec).
type labExec func(ctx context.Context, machine string, args ...string) ([]byte, error)

// bastionFlows counts what crosses the bastion's link, by flow: iptables
// rules in its namespace for its SSH to the hosts (both ways) and for the
// ports each job's tracker and seeder listen on, the namespace's TCP
// segment and retransmission counters, and the packets its link's queue
// carried and dropped (the IFB that shapes its egress, in the default
// namespace). The rules go with the namespace when the lab is taken
// down; remove deletes them before.
type bastionFlows struct {
	exec labExec
	ifb  string // "" when the lab's links are not shaped

	mu    sync.Mutex
	added [][]string // every rule in place, to remove
}

// flowCounts is one reading of bastionFlows; sub gives what a run added.
type flowCounts struct {
	SSHOut, SSHIn     int64 // IP bytes to and from the hosts' sshd
	Tracker, Seeder   int64 // IP bytes sent from the jobs' tracker and seeder ports
	OutSegs, Retrans  int64 // TCP segments the bastion sent, and how many were retransmissions
	LinkSent, Dropped int64 // bytes its link's queue passed on, packets it dropped
}

func (c flowCounts) sub(o flowCounts) flowCounts {
	return flowCounts{
		SSHOut: c.SSHOut - o.SSHOut, SSHIn: c.SSHIn - o.SSHIn,
		Tracker: c.Tracker - o.Tracker, Seeder: c.Seeder - o.Seeder,
		OutSegs: c.OutSegs - o.OutSegs, Retrans: c.Retrans - o.Retrans,
		LinkSent: c.LinkSent - o.LinkSent, Dropped: c.Dropped - o.Dropped,
	}
}

func (f *bastionFlows) insert(ctx context.Context, rule []string) error {
	if _, err := f.exec(ctx, "bastion", append([]string{"iptables", "-w", "-I"}, rule...)...); err != nil {
		return err
	}
	f.mu.Lock()
	f.added = append(f.added, rule)
	f.mu.Unlock()
	return nil
}

// add puts the SSH rules in place.
func (f *bastionFlows) add(ctx context.Context) error {
	for _, r := range sshRules {
		if err := f.insert(ctx, r); err != nil {
			return fmt.Errorf("add ssh byte counter: %w", err)
		}
	}
	return nil
}

// remove deletes every rule add and watchJob put in place.
func (f *bastionFlows) remove(ctx context.Context) error {
	f.mu.Lock()
	added := f.added
	f.added = nil
	f.mu.Unlock()
	var errs []error
	for _, r := range added {
		if _, err := f.exec(ctx, "bastion", append([]string{"iptables", "-w", "-D"}, r...)...); err != nil {
			errs = append(errs, fmt.Errorf("remove byte counter %v: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// servingLine matches layercast's log line that names its tracker's and
// seeder's addresses (orchestrator's "serving", at info level).
var servingLine = regexp.MustCompile(`msg=serving .*tracker=\S+:(\d+) seeder=\S+:(\d+)`)

// servingPorts finds the tracker's and seeder's ports in a job's log.
func servingPorts(log []byte) (tracker, seeder int, ok bool) {
	m := servingLine.FindSubmatch(log)
	if m == nil {
		return 0, 0, false
	}
	tracker, _ = strconv.Atoi(string(m[1]))
	seeder, _ = strconv.Atoi(string(m[2]))
	return tracker, seeder, true
}

// watchJob reads a job's log file until it names the job's ports, then
// counts what the bastion sends from them. The ports are the job's own
// (random, chosen as it starts), and nothing crosses them before the line
// is written: the hosts learn them from their job spec after it.
func (f *bastionFlows) watchJob(ctx context.Context, logPath string) error {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(logPath)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read layercast's log: %w", err)
		}
		if tracker, seeder, ok := servingPorts(b); ok {
			if err := f.insert(ctx, portRule(trackerRuleComment, tracker)); err != nil {
				return fmt.Errorf("add tracker byte counter: %w", err)
			}
			if err := f.insert(ctx, portRule(seederRuleComment, seeder)); err != nil {
				return fmt.Errorf("add seeder byte counter: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // the job ended before serving anything
		case <-tick.C:
		}
	}
}

// read returns the counts so far.
func (f *bastionFlows) read(ctx context.Context) (flowCounts, error) {
	var c flowCounts
	b, err := f.exec(ctx, "bastion", "iptables", "-w", "-L", "-v", "-n", "-x")
	if err != nil {
		return c, fmt.Errorf("read byte counters: %w", err)
	}
	rules := string(b)
	var ok bool
	if c.SSHOut, ok, err = sumRuleBytes(rules, sshRuleComment); err == nil && !ok {
		err = fmt.Errorf("no iptables rule %q in:\n%s", sshRuleComment, rules)
	}
	if err != nil {
		return c, err
	}
	if c.SSHIn, ok, err = sumRuleBytes(rules, sshInRuleComment); err == nil && !ok {
		err = fmt.Errorf("no iptables rule %q in:\n%s", sshInRuleComment, rules)
	}
	if err != nil {
		return c, err
	}
	if c.Tracker, _, err = sumRuleBytes(rules, trackerRuleComment); err != nil {
		return c, err
	}
	if c.Seeder, _, err = sumRuleBytes(rules, seederRuleComment); err != nil {
		return c, err
	}
	// -s: absolute counters, and nstat's history file left alone.
	b, err = f.exec(ctx, "bastion", "nstat", "-asz", "TcpOutSegs", "TcpRetransSegs")
	if err != nil {
		return c, fmt.Errorf("read the bastion's TCP counters: %w", err)
	}
	snmp := parseNstat(string(b))
	c.OutSegs, c.Retrans = snmp["TcpOutSegs"], snmp["TcpRetransSegs"]
	if f.ifb != "" {
		out, err := exec.CommandContext(ctx, "tc", "-s", "qdisc", "show", "dev", f.ifb).Output()
		if err != nil {
			return c, fmt.Errorf("read the bastion's link queue: %w", err)
		}
		if c.LinkSent, c.Dropped, err = parseQdiscRoot(string(out)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// sumRuleBytes adds up the byte counts (the second column) of the rules
// with comment in `iptables -L -v -n -x` output; found says whether there
// was any.
func sumRuleBytes(out, comment string) (n int64, found bool, err error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "/* "+comment+" */") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return 0, false, fmt.Errorf("parse iptables counter %q", line)
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("parse iptables counter %q: %w", line, err)
		}
		n, found = n+v, true
	}
	return n, found, nil
}

// parseNstat reads `nstat -a` output: a counter's name, its value, and
// its rate.
func parseNstat(out string) map[string]int64 {
	m := map[string]int64{}
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			m[f[0]] = v
		}
	}
	return m
}

// qdiscStats matches a qdisc's statistics line in `tc -s qdisc show`.
var qdiscStats = regexp.MustCompile(`Sent (\d+) bytes \d+ pkt \(dropped (\d+),`)

// parseQdiscRoot reads the first (root) qdisc's bytes sent and packets
// dropped from `tc -s qdisc show dev D`; htb counts its classes' drops in
// its own.
func parseQdiscRoot(out string) (sent, dropped int64, err error) {
	m := qdiscStats.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no qdisc statistics in:\n%s", out)
	}
	sent, _ = strconv.ParseInt(m[1], 10, 64)
	dropped, _ = strconv.ParseInt(m[2], 10, 64)
	return sent, dropped, nil
}

package bench

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// sshRuleComment tags the bench's accounting rule in the bastion's
// iptables OUTPUT chain.
const sshRuleComment = "layercast-bench-ssh"

// sshRule is the accounting rule (no target: it only counts) for the bytes
// the bastion sends to the hosts' sshd. The node binary crosses the
// bastion's link there, with each host's job spec and control lines.
var sshRule = []string{"OUTPUT", "-p", "tcp", "--dport", "22", "-m", "comment", "--comment", sshRuleComment}

// labExec runs a command inside a lab machine (testbed.Lab.Exec).
type labExec func(ctx context.Context, machine string, args ...string) ([]byte, error)

// sshCounter counts the bastion's bytes to TCP port 22 with an iptables
// rule in the bastion's network namespace; the rule goes with the
// namespace when the lab is taken down, and remove deletes it before.
type sshCounter struct{ exec labExec }

func (c sshCounter) add(ctx context.Context) error {
	if _, err := c.exec(ctx, "bastion", append([]string{"iptables", "-w", "-I"}, sshRule...)...); err != nil {
		return fmt.Errorf("add ssh byte counter: %w", err)
	}
	return nil
}

func (c sshCounter) remove(ctx context.Context) error {
	if _, err := c.exec(ctx, "bastion", append([]string{"iptables", "-w", "-D"}, sshRule...)...); err != nil {
		return fmt.Errorf("remove ssh byte counter: %w", err)
	}
	return nil
}

func (c sshCounter) read(ctx context.Context) (int64, error) {
	out, err := c.exec(ctx, "bastion", "iptables", "-w", "-L", "OUTPUT", "-v", "-n", "-x")
	if err != nil {
		return 0, fmt.Errorf("read ssh byte counter: %w", err)
	}
	return parseRuleBytes(string(out), sshRuleComment)
}

// parseRuleBytes finds the rule with comment in `iptables -L -v -n -x`
// output and returns its byte count (the second column).
func parseRuleBytes(out, comment string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "/* "+comment+" */") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			break
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse iptables counter %q: %w", line, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("no iptables rule %q in:\n%s", comment, out)
}

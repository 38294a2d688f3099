package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// sshRuleComment and sshInRuleComment tag the bench's accounting rules in
// the bastion's iptables OUTPUT and INPUT chains.
const (
	sshRuleComment   = "layercast-bench-ssh"
	sshInRuleComment = "layercast-bench-ssh-in"
)

// sshRules are the accounting rules (no target: they only count) for the
// bytes between the bastion and the hosts' sshd. Out: the node binary
// crosses the bastion's link there, with each host's job spec and control
// lines. In: the nodes' events (progress lines above all) and the ACKs of
// what went out.
var sshRules = [][]string{
	{"OUTPUT", "-p", "tcp", "--dport", "22", "-m", "comment", "--comment", sshRuleComment},
	{"INPUT", "-p", "tcp", "--sport", "22", "-m", "comment", "--comment", sshInRuleComment},
}

// labExec runs a command inside a lab machine (testbed.Lab.Exec).
type labExec func(ctx context.Context, machine string, args ...string) ([]byte, error)

// sshCounter counts the bastion's bytes to and from TCP port 22 with
// iptables rules in the bastion's network namespace; the rules go with the
// namespace when the lab is taken down, and remove deletes them before.
type sshCounter struct{ exec labExec }

func (c sshCounter) add(ctx context.Context) error {
	for _, r := range sshRules {
		if _, err := c.exec(ctx, "bastion", append([]string{"iptables", "-w", "-I"}, r...)...); err != nil {
			return fmt.Errorf("add ssh byte counter: %w", err)
		}
	}
	return nil
}

func (c sshCounter) remove(ctx context.Context) error {
	var errs []error
	for _, r := range sshRules {
		if _, err := c.exec(ctx, "bastion", append([]string{"iptables", "-w", "-D"}, r...)...); err != nil {
			errs = append(errs, fmt.Errorf("remove ssh byte counter: %w", err))
		}
	}
	return errors.Join(errs...)
}

// read returns the bytes counted so far to the hosts' sshd and from them.
func (c sshCounter) read(ctx context.Context) (out, in int64, err error) {
	b, err := c.exec(ctx, "bastion", "iptables", "-w", "-L", "-v", "-n", "-x")
	if err != nil {
		return 0, 0, fmt.Errorf("read ssh byte counters: %w", err)
	}
	if out, err = parseRuleBytes(string(b), sshRuleComment); err != nil {
		return 0, 0, err
	}
	if in, err = parseRuleBytes(string(b), sshInRuleComment); err != nil {
		return 0, 0, err
	}
	return out, in, nil
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

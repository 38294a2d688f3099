package bench

import (
	"bytes"
	"strings"
	"testing"
)

// Four samples as `perf script -F comm,tid,ip,sym` prints them: a node in
// its own code, a node in a system call, a node running the network
// stack's soft interrupt under a send, and a CPU idling through an
// interrupt. A kernel thread, a command name with a space and dockerd
// re-executed to unpack a layer ("exe") go by their names.
const perfScriptSample = `layercast-node- 10391 
	          16a06b [unknown]
	          167685 [unknown]

layercast-node- 10391 
	ffffffff8144ebc8 futex_wake
	ffffffff8224d141 do_syscall_64
	ffffffff81000130 entry_SYSCALL_64_after_hwframe
	           8ee43 [unknown]

layercast-node- 10392 
	ffffffff81c1a2b3 htb_dequeue
	ffffffff81b0c4d5 net_tx_action
	ffffffff8225e6f7 handle_softirqs
	ffffffff81b0a1b2 __dev_queue_xmit
	ffffffff81c0b2a3 tcp_sendmsg
	ffffffff8224d141 do_syscall_64
	           8ee43 [unknown]

swapper     0 
	ffffffff81b1c2d3 net_rx_action
	ffffffff8225e6f7 handle_softirqs
	ffffffff8224e8f9 default_idle

kworker/u8:4-fl   77 
	ffffffff81401234 writeback_sb_inodes

Web Content  4242 
	          401000 [unknown]

exe  5151 
	ffffffff81a1b2c3 copy_page_from_iter
`

func TestParsePerfScript_SplitsEachKindsSamples(t *testing.T) {
	s, err := parsePerfScript(strings.NewReader(perfScriptSample))
	if err != nil {
		t.Fatal(err)
	}
	want := perfSplit{
		KindNode:   {inUser: 1, inKernel: 1, inSoftirq: 1},
		"idle":     {inSoftirq: 1},
		KindKernel: {inKernel: 1},
		KindOther:  {inUser: 1},
		KindDocker: {inKernel: 1},
	}
	if len(s) != len(want) {
		t.Errorf("kinds %v, want %v", s, want)
	}
	for k, by := range want {
		for state, n := range by {
			if s[k][state] != n {
				t.Errorf("%s %s: %d samples, want %d (all: %v)", k, state, s[k][state], n, s)
			}
		}
	}
	var md bytes.Buffer
	s.table(&md)
	if !strings.Contains(md.String(), "| node | 42.9 % | 33.3 % | 33.3 % | 33.3 % |") {
		t.Errorf("table lacks the node's row:\n%s", md.String())
	}
}

// The bench's /proc accounting and perf's split name programs alike; only
// the accounting knows the machine, so sshd, Docker and nodes count only on
// hosts there, layercast only on the bastion.
func TestClassifyAndPerfKind_NameProgramsAlike(t *testing.T) {
	for _, c := range []struct{ comm, role, proc, perf string }{
		{"layercast-node-", "host", KindNode, KindNode},
		{"docker-untar", "host", KindDocker, KindDocker},
		{"sshd", "host", KindSSHD, KindSSHD},
		{"sshd", "bastion", KindOther, KindSSHD},
		{"dockerd", "bastion", KindOther, KindDocker},
		{"layercast", "bastion", KindLayercast, KindLayercast},
		{"layercast", "host", KindOther, KindLayercast},
		{"docker-registry", "registry", KindRegistry, KindRegistry},
		{"kworker/0:1", roleKernel, KindKernel, KindKernel},
		{"sh", "host", KindOther, KindOther},
	} {
		if got := classify(c.comm, c.role); got != c.proc {
			t.Errorf("classify(%q, %q) = %s, want %s", c.comm, c.role, got, c.proc)
		}
		if got := perfKind(c.comm); got != c.perf {
			t.Errorf("perfKind(%q) = %s, want %s", c.comm, got, c.perf)
		}
	}
}

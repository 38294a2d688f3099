package testbed

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsPath is where `ip netns add` pins a named network namespace.
func netnsPath(name string) string { return "/run/netns/" + name }

// inNetns runs fn on an OS thread that has joined the network namespace at
// nsPath. Sockets that fn creates stay in that namespace after fn returns,
// so a listener or a connection made here serves the lab from this process.
func inNetns(nsPath string, fn func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked (and so thrown away when this goroutine
		// ends) unless it is back in its own namespace.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("join network namespace %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("return from network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dialIn opens a connection from inside the network namespace at nsPath.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNetns(nsPath, func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// listenIn opens a listener inside the network namespace at nsPath.
func listenIn(nsPath, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(nsPath, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// waitPort waits until a TCP port answers from inside nsPath.
func waitPort(ctx context.Context, nsPath, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		conn, err := dialIn(dctx, nsPath, "tcp", addr)
		dcancel()
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last error: %w)", addr, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// shapeLines returns tc batch lines that limit dev's egress to rate bits per
// second.
//
// Neither direction is shaped on the machine's own interface: its TCP
// would see the queue full and the kernel refuse its packets (a local
// drop), which no switch port does to a host. On this lab that refused a
// third of the bastion's packets (100 hosts at 2 Mbit/s: 57,784 of
// 168,324 dropped at its eth0's queue), and an SSH connection whose first
// retransmission such a drop refused ended within a second with
// "connection timed out" (21 of 100 hosts failed their setup that way,
// with cubic as with bbr): the kernel then judges the connection's
// retransmissions as timed out from a start it never recorded. So the
// machine's egress goes through an IFB in the default namespace
// (redirectLines), where a drop is a loss on the way.
//
// ARP has its own class, served first. Data sits in a bfifo of
// queueLimit(rate) bytes, which a host uploading to every peer keeps
// full, and a full queue drops whatever arrives, ARP included; neighbour
// resolution must not depend on winning that race. (The 40-host bench's
// unreachable peers turned out to be the machine-wide ARP table
// overflowing, see raiseNeighLimits; this class is a precaution measured
// with it.) The machine's kernel has no fair-queueing qdisc (fq_codel, sfq)
// that would do this by itself.
func shapeLines(dev string, rate int64) []string {
	lines := []string{"qdisc add dev " + dev + " root handle 1: htb default 11"}
	lines = append(lines, classLines("add", dev, rate)...)
	return append(lines,
		"qdisc add dev "+dev+" parent 1:10 handle 10: pfifo limit 100",
		"filter add dev "+dev+" parent 1: protocol arp prio 1 u32 match u32 0 0 flowid 1:10",
		queueLine("add", dev, rate),
	)
}

// redirectLines returns tc batch lines that send every packet arriving on
// link (what the machine at its other end sends) through ifb first.
func redirectLines(link, ifb string) []string {
	return []string{
		"qdisc add dev " + link + " handle ffff: ingress",
		"filter add dev " + link + " parent ffff: protocol all u32 match u32 0 0 action mirred egress redirect dev " + ifb,
	}
}

// delayLine returns the tc batch line that holds every packet leaving dev
// for delay; its queue holds every packet in flight, so it drops none.
func delayLine(dev string, delay time.Duration) string {
	return fmt.Sprintf("qdisc add dev %s root handle 1: netem delay %dus limit 100000", dev, delay.Microseconds())
}

// queueLimit is the data queue of a link of rate bits per second, in
// bytes: what the link sends in queueTime, at least 32 full packets. It
// counts bytes, as a switch's buffer does: counted in packets, the pure
// ACKs and SSH keepalives of 100 hosts took the places of a 2 Mbit/s
// bastion's 32-packet queue as full packets would. A switch
// port or a host's NIC queue holds milliseconds, not seconds; a fixed
// 1000-packet queue held 1.2 s at 10 Mbit/s, and a host that uploads to
// its peers then delayed its own download's ACKs, its SSH and its tracker
// answers by that much (10 hosts × 250 MB: each host received at 75 % of
// its link, setup took 28–42 s; docs/BENCHMARKS.md).
func queueLimit(rate int64) int64 {
	const queueTime = 50 * time.Millisecond
	const packet = 1500
	return max(rate*int64(queueTime/time.Millisecond)/1000/8, 32*packet)
}

// queueLine adds or changes the data class's bfifo of dev for rate.
func queueLine(verb, dev string, rate int64) string {
	return fmt.Sprintf("qdisc %s dev %s parent 1:11 handle 11: bfifo limit %d", verb, dev, queueLimit(rate))
}

// classLines adds ("add") or changes ("change") the HTB classes that set
// dev's rate: 1:1 for the link, 1:10 for ARP, 1:11 for everything else.
// A leaf sends at its own rate without asking its parent, so a new rate
// goes to the leaves as well as to 1:1.
func classLines(verb, dev string, rate int64) []string {
	r := strconv.FormatInt(rate, 10) + "bit"
	arp := strconv.FormatInt(min(rate, 64_000), 10) + "bit"
	return []string{
		"class " + verb + " dev " + dev + " parent 1: classid 1:1 htb rate " + r + " ceil " + r + " quantum 60000",
		"class " + verb + " dev " + dev + " parent 1:1 classid 1:10 htb rate " + arp + " ceil " + r + " prio 0",
		"class " + verb + " dev " + dev + " parent 1:1 classid 1:11 htb rate " + r + " ceil " + r + " prio 1 quantum 60000",
	}
}

// allowedCCPath lists the congestion controls a network namespace other
// than the machine's own may choose.
const allowedCCPath = "/proc/sys/net/ipv4/tcp_allowed_congestion_control"

// allowCongestionControl adds cc to the machine's allowed list when it is
// not there: the kernel lets a namespace choose only those (this machine
// allows "reno bbr", not cubic, Linux's default). It changes no socket's
// algorithm.
func allowCongestionControl(log *slog.Logger, cc string) error {
	b, err := os.ReadFile(allowedCCPath)
	if err != nil {
		return fmt.Errorf("read allowed TCP congestion controls: %w", err)
	}
	allowed := strings.Fields(string(b))
	if slices.Contains(allowed, cc) {
		return nil
	}
	want := strings.Join(append(allowed, cc), " ")
	if err := os.WriteFile(allowedCCPath, []byte(want), 0o644); err != nil {
		avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		return fmt.Errorf("allow TCP congestion control %q in network namespaces (this kernel offers %s): %w", cc, strings.TrimSpace(string(avail)), err)
	}
	log.Info("allowed a TCP congestion control in network namespaces (a machine-wide list)", "allowed", strings.Join(allowed, " ")+" → "+want)
	return nil
}

// setCongestionControl sets the TCP congestion control of network
// namespace ns. A new namespace takes the machine's default, and the
// machines the lab runs on differ (this one's is bbr): the lab's choice
// must not depend on them.
func setCongestionControl(nsPath, cc string) error {
	// /proc/sys/net is the namespace of the thread that opens it.
	err := inNetns(nsPath, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/tcp_congestion_control", []byte(cc), 0o644)
	})
	if err != nil {
		avail, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_available_congestion_control")
		return fmt.Errorf("set TCP congestion control %q (this kernel offers %s): %w", cc, strings.TrimSpace(string(avail)), err)
	}
	return nil
}

// Package testbed turns one Linux machine (as root) into a small lab of
// Docker hosts, and containerd-only hosts like Kubernetes nodes, for
// layercast's tests and benchmarks.
//
// A lab has one bridge and, per machine, a network namespace joined to the
// bridge by a veth pair shaped with tc (HTB) in both directions. Every host
// also has persistent mount and UTS namespaces in which its hostname, /run,
// /tmp, /root, /home, /etc/ssh, /etc/docker, /etc/hosts, /var/lib/docker and
// the account files (passwd, group, shadow, sudoers) are its own, bound from
// the lab directory; the machine's own files are never changed. So its
// OpenSSH sshd and its dockerd, and every SSH session, see a machine of
// their own: /var/run/docker.sock inside a host is that host's daemon. Each
// host has the logins root and DeployUser (docker only through sudo -n).
//
// The last Config.Containerd hosts run Debian's containerd instead of
// dockerd, with its CRI plugin as on a Kubernetes node: /var/lib/containerd
// and /etc/containerd are their own too, the socket is
// /run/containerd/containerd.sock inside the host, there is no Docker
// socket, and the lab registry is trusted through
// /etc/containerd/certs.d. The inventory marks them with the label
// runtime: containerd and the group containerd. Containers started there
// (ctr run) die with the host's namespaces on Down; their cgroups are
// containerd's own, outside the lab's.
//
// The bastion (the operator's machine) has its own network, hostname, /run
// and dockerd but otherwise sees the machine's files, so the operator's
// binaries and the lab directory are there. An optional registry machine
// runs Debian's docker-registry on port 5000, trusted by every daemon.
//
// The lab directory receives inventory.yaml (root), inventory-deploy.yaml
// (DeployUser with become), known_hosts, id_ed25519, an exec script, the
// generated images and every machine's files. A state file under
// StateRoot lets another process (the testbed command) find the lab by
// name to inject faults or take it down; Down removes every process (by
// recorded pid and by namespace membership), mount, namespace, link,
// cgroup and file the lab made.
//
// One machine-wide setting is changed: the kernel's ARP table, which every
// network namespace shares, gets limits large enough for every lab machine
// to resolve every other (net.ipv4.neigh.default.gc_thresh1..3, raised when
// too low, logged, never lowered, left raised after Down).
//
// Processes in the default network namespace reach the lab through
// Lab.Dial (a socket made inside the bastion's network namespace); the
// machine gets no route or address into the lab.
package testbed

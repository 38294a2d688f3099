// Package testbed turns one Linux machine (as root) into a small lab of
// Docker hosts for layercast's tests and benchmarks.
//
// A lab has one bridge and, per machine, a network namespace joined to the
// bridge by a shaped veth pair. Every host also has a persistent mount
// namespace in which /run, /tmp, /root, /home, /etc/ssh, /etc/docker,
// /var/lib/docker and the account files are its own, so that its OpenSSH
// sshd and its dockerd (and every SSH session) see a machine of their own:
// /var/run/docker.sock inside a host is that host's daemon. A bastion
// machine (the operator's) has its own dockerd; an optional registry machine
// runs Debian's docker-registry.
//
// Labs are found again by name through a state file under
// /run/layercast-testbed, so a separate process (the testbed command) can
// inject faults into a lab or take it down.
package testbed

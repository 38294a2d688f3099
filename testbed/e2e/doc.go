// Package e2e tests the layercast binary end to end on the testbed: real
// sshd, real dockerd, real swarm, shaped links. It holds tests only; they
// need root and the binary built by make (LAYERCAST_BIN), which `make
// test` sets, and run side by side (labTest), each on a lab of its own.
package e2e

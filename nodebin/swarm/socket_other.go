//go:build !linux

package swarm

// setNotSentLowat does nothing where TCP_NOTSENT_LOWAT is not set this
// way; the node binary is built for Linux only.
func setNotSentLowat(uintptr, int) error { return nil }

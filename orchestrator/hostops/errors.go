package hostops

import "errors"

// Errors of a host that cannot take a job; the orchestrator reports them
// as the host's failure reason.
var (
	// ErrSudoNeedsPassword: become is set but `sudo -n` wants a password.
	ErrSudoNeedsPassword = errors.New("sudo needs a password")
	// ErrNoDocker: docker is missing or not usable by the login user.
	ErrNoDocker = errors.New("docker not usable")
	// ErrNoRuntime: the container runtime asked for (containerd) is not
	// usable on the host.
	ErrNoRuntime = errors.New("container runtime not usable")
	// ErrNotLinux: the host is not a Linux host.
	ErrNotLinux = errors.New("not a linux host")
	// ErrChecksumMismatch: the uploaded binary's sha256 on the host differs
	// from the one expected.
	ErrChecksumMismatch = errors.New("checksum mismatch")
	// ErrFetch: a host could not fetch the node binary from another host.
	ErrFetch = errors.New("fetch failed")
	// ErrNoFetchTool: the host has neither curl nor wget.
	ErrNoFetchTool = errors.New("no tool to fetch with")
	// ErrNoWorkDir: no candidate work-dir base is writable and allows
	// exec.
	ErrNoWorkDir = errors.New("no directory for the job to run in")
)

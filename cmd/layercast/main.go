// Command layercast pushes a container image from this machine (the bastion)
// to a fleet of Docker hosts peer-to-peer. Run without arguments on a
// terminal it opens the console; `layercast run` does the same job headless.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set by the Makefile.
var version = "dev"

// Exit codes, documented in the README.
const (
	exitOK        = 0 // every host has the image
	exitFailed    = 1 // some hosts failed; the others have the image
	exitUsage     = 2 // bad usage, inventory or image; no host was touched
	exitError     = 3 // the bastion itself failed (cache, tracker, seeder)
	exitCancelled = 130
)

// exitError carries the process exit code out of a command.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return
	}
	var ce *exitCodeError
	if errors.As(err, &ce) {
		if ce.err != nil {
			fmt.Fprintln(os.Stderr, "layercast:", ce.err)
		}
		os.Exit(ce.code)
	}
	fmt.Fprintln(os.Stderr, "layercast:", err)
	os.Exit(exitUsage)
}

// Command testbed brings up a lab of Docker hosts on this machine for
// layercast's tests and benchmarks, injects faults into it, builds test
// images and takes the lab down again. It needs root.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries the exit code of a command run inside the lab.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(max(ee.code, 1))
	}
	fmt.Fprintln(os.Stderr, "testbed:", err)
	os.Exit(1)
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "testbed",
		Short: "A lab of Docker hosts on one Linux machine, for layercast's tests",
		Long: `testbed turns this machine (as root) into a small data centre: per host a
network namespace and a mount namespace with its own sshd, dockerd and /tmp,
a bastion with its own dockerd, an optional registry, and shaped links.

  testbed up --hosts 8 --registry          # prints the lab directory
  testbed image --size 500MB --layers 5 -t lab/app:v1
  testbed exec bastion -- layercast run -i /tmp/layercast-lab-lab/inventory.yaml lab/app:v1
  testbed down`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("name", "lab", "lab name (labs with different names run side by side)")
	root.AddCommand(
		newUpCmd(), newDownCmd(), newListCmd(), newExecCmd(), newStatusCmd(),
		newImageCmd(), newPreloadCmd(), newMeasureRateCmd(), newFaultCmd(), newDepsCmd(), newBenchCmd(),
	)
	return root
}

func labName(cmd *cobra.Command) string {
	name, _ := cmd.Flags().GetString("name")
	return name
}

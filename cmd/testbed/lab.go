package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/layercast/layercast/testbed"
	"github.com/spf13/cobra"
)

// ccUsage is the help of the --cc flag of up and bench.
const ccUsage = "TCP congestion control of every lab machine (cubic, bbr, reno: what the kernel offers)"

func newUpCmd() *cobra.Command {
	var cfg testbed.Config
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Bring up a lab (a stale lab of the same name is taken down first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Name = labName(cmd)
			start := time.Now()
			lab, err := testbed.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "lab %s up in %s: %d hosts (%d containerd only), registry %q\n",
				lab.Name(), time.Since(start).Round(time.Millisecond), len(lab.Hosts()), cfg.Containerd, lab.RegistryAddr())
			fmt.Fprintf(os.Stderr, "inventory: %s\n", lab.InventoryPath())
			fmt.Println(lab.Dir())
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Hosts, "hosts", 3, "number of hosts")
	f.IntVar(&cfg.Containerd, "containerd", 0, "how many of the hosts (the last ones) run containerd only, like Kubernetes nodes, instead of dockerd")
	f.StringVar(&cfg.Rate, "rate", testbed.DefaultRate, "rate of every link, both ways (tc notation: 100mbit, 1gbit)")
	f.DurationVar(&cfg.Delay, "delay", 0, "one-way latency added between lab machines")
	f.StringVar(&cfg.CongestionControl, "cc", testbed.DefaultCongestionControl, ccUsage)
	f.BoolVar(&cfg.Registry, "registry", false, "add a registry (docker-registry on :5000) that every daemon trusts")
	f.StringVar(&cfg.Dir, "dir", "", "lab directory (default /tmp/layercast-lab-NAME)")
	f.IntVar(&cfg.Parallel, "parallel", 16, "hosts set up at once")
	return cmd
}

func newDownCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Take a lab down: every process, namespace, link, mount and file (safe twice)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := testbed.Open(labName(cmd))
			if errors.Is(err, testbed.ErrNoLab) {
				fmt.Fprintf(os.Stderr, "lab %s is not up\n", labName(cmd))
				return nil
			}
			if err != nil {
				return err
			}
			return lab.Down(cmd.Context())
		},
	}
}

func newListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the labs on this machine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			names, err := testbed.List()
			if err != nil {
				return err
			}
			for _, n := range names {
				lab, err := testbed.Open(n)
				if err != nil {
					return err
				}
				fmt.Printf("%s\t%d hosts\t%s\n", n, len(lab.Hosts()), lab.Dir())
			}
			return nil
		},
	}
}

func newStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show every machine of a lab, its daemons and its memory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lab, err := testbed.Open(labName(cmd))
			if err != nil {
				return err
			}
			st, err := lab.Status()
			if err != nil {
				return err
			}
			var total int64
			for _, m := range st {
				daemon := fmt.Sprintf("dockerd=%-5t", m.Docker)
				if m.Runtime == testbed.RuntimeContainerd {
					daemon = fmt.Sprintf("containerd=%-5t", m.Containerd)
				}
				fmt.Printf("%-9s %-8s %-13s %-16s sshd=%-5t registry=%-5t procs=%-3d pss=%dMiB%s\n",
					m.Name, m.Role, m.IP, daemon, m.SSHD, m.Registry, m.Procs, m.PSS>>20, m.Faults)
				total += m.PSS
			}
			fmt.Printf("total pss %d MiB\n", total>>20)
			return nil
		},
	}
}

func newExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "exec MACHINE -- COMMAND [ARG...]",
		Short: "Run a command inside a lab machine (a host, bastion or registry)",
		Long: `Run a command inside a lab machine's network and mount namespaces, so that
/var/run/docker.sock is that machine's daemon. On the bastion the working
directory and environment are kept, so the operator's tools run as usual:

  testbed exec bastion -- layercast run -i /tmp/layercast-lab-lab/inventory.yaml lab/app:v1`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lab, err := testbed.Open(labName(cmd))
			if err != nil {
				return err
			}
			c, err := lab.Command(cmd.Context(), args[0], args[1:]...)
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
			err = c.Run()
			var xe *exec.ExitError
			if errors.As(err, &xe) {
				return exitError{code: xe.ExitCode()}
			}
			return err
		},
	}
}

func newDepsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "deps",
		Short: "Install the lab's Debian packages when missing (docker.io, containerd, runc, openssh-server, docker-registry, iproute2, sudo)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if missing := testbed.MissingDeps(); len(missing) > 0 {
				fmt.Fprintf(os.Stderr, "installing %v\n", missing)
			}
			return testbed.EnsureDeps(cmd.Context())
		},
	}
}

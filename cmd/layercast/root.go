package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/layercast/layercast/internal/byterate"
	"github.com/layercast/layercast/internal/textfmt"
	"github.com/layercast/layercast/orchestrator"
	"github.com/layercast/layercast/orchestrator/imagecache"
)

func newRootCmd() *cobra.Command {
	var jf jobFlags
	var showVersion bool
	root := &cobra.Command{
		Use:   "layercast",
		Short: "Push a container image to a fleet of Docker hosts peer-to-peer",
		Long: `layercast takes an image from this machine's Docker daemon, or straight from
its registry, to every selected host of an inventory. The hosts share the layers with each other over
BitTorrent, so the registry and this machine stop being the bottleneck.
Nothing is installed on the hosts: each job uploads a small node binary over
SSH and removes it afterwards.

On a terminal, layercast without a command opens the console.`,
		Example: `  layercast -i inventory.yaml                 # open the console
  layercast run -i inventory.yaml app:v2      # headless
  layercast run -i inventory.yaml --json app:v2 > events.jsonl`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				return printVersion(cmd.OutOrStdout())
			}
			if !term.IsTerminal(int(os.Stdin.Fd())) || !term.IsTerminal(int(os.Stdout.Fd())) {
				return usageErr(errors.New("the console needs a terminal; use `layercast run` for headless jobs"))
			}
			return runConsole(cmd.Context(), &jf)
		},
	}
	jf.register(root)
	root.Flags().StringVar(&jf.image, "image", "", "image to preselect in the console")
	root.Flags().BoolVar(&showVersion, "version", false, "print the version, as `layercast version` does")
	root.AddCommand(newRunCmd(), newPlanCmd(), newCleanCmd(), newVersionCmd(), newCompletionCmd())
	return root
}

// jobFlags are the flags that describe a job, shared by run, plan and the console.
type jobFlags struct {
	inventory         string
	hosts             []string
	groups            []string
	image             string
	mode              string
	source            string
	compress          string
	maxRate           string
	hostMaxRate       string
	tunnel            bool
	bastionAddr       string
	concurrency       int
	uploadConcurrency int
	acceptNew         bool
	announce          time.Duration
	timeout           time.Duration
	stallTimeout      time.Duration
	connectTimeout    time.Duration
	setupTimeout      time.Duration
	checkTimeout      time.Duration
	importTimeout     time.Duration
	cacheDir          string
	noNodeCache       bool
	nodeBinDir        string
	logFile           string
	verbose           bool
}

func (f *jobFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.inventory, "inventory", "i", "inventory.yaml", "inventory file (layercast YAML or Ansible INI/YAML)")
	fl.StringSliceVar(&f.hosts, "hosts", nil, "only these hosts (comma-separated names)")
	fl.StringSliceVarP(&f.groups, "group", "g", nil, "only the hosts of these groups")
	fl.StringVar(&f.mode, "mode", string(orchestrator.DefaultMode), "how layers travel: p2p, registry (every host pulls) or auto")
	fl.StringVar(&f.source, "source", string(orchestrator.DefaultSource), "where the bastion takes the image from: daemon (this machine's Docker), registry (no daemon needed; credentials from this machine's Docker config stay here) or auto (the daemon when it has the image)")
	fl.StringVar(&f.compress, "compress", string(orchestrator.DefaultCompress), "how daemon-source layers travel: auto (gzip, kept when it saves 5 %), gzip or none; registry layers travel as the registry holds them")
	fl.StringVar(&f.maxRate, "max-rate", "0", "cap on this machine's upload to the hosts, e.g. 50MB/s or 400mbit (0: none)")
	fl.StringVar(&f.hostMaxRate, "host-max-rate", "0", "cap on each host's swarm download and upload, e.g. 20MB/s, where the inventory sets no max_rate (0: none)")
	fl.BoolVar(&f.tunnel, "tunnel", false, "reach tracker and seeder through SSH remote forwarding (hosts that cannot connect to this machine)")
	fl.StringVar(&f.bastionAddr, "bastion-addr", "", "address hosts use to reach this machine: an IPv4 address, or a name this machine resolves (default: as each host's SSH connection sees it)")
	fl.IntVar(&f.concurrency, "concurrency", orchestrator.DefaultConcurrency, "hosts worked on at once over SSH")
	fl.IntVar(&f.uploadConcurrency, "upload-concurrency", orchestrator.DefaultUploadConcurrency, "node binary uploads at once")
	fl.BoolVar(&f.acceptNew, "accept-new-host-keys", false, "trust and record the key of a host not yet in known_hosts")
	fl.DurationVar(&f.announce, "announce-interval", 0, "tracker announce interval (0: automatic, 1s for small fleets and longer as the fleet grows)")
	fl.DurationVar(&f.timeout, "timeout", 0, "give up on the whole job after this long (0: no limit)")
	fl.DurationVar(&f.stallTimeout, "stall-timeout", orchestrator.DefaultStallTimeout, "fail a downloading host that receives nothing for this long while it has no peer, or while no host gets anything (0: never)")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", orchestrator.DefaultConnectTimeout, "fail an SSH connect and handshake to a host (or jump host) that takes longer, per attempt")
	fl.DurationVar(&f.setupTimeout, "setup-timeout", orchestrator.DefaultSetupTimeout, "fail a host whose setup command (probe, cleanup, work dir, node binary upload or fetch) takes longer (0: never)")
	fl.DurationVar(&f.checkTimeout, "check-timeout", orchestrator.DefaultCheckTimeout, "fail a host whose node takes longer from its start to asking Docker which layers it has (0: never)")
	fl.DurationVar(&f.importTimeout, "import-timeout", orchestrator.DefaultImportTimeout, "fail a host whose Docker daemon takes longer to import the image once every layer is in (0: never)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "where exported layers are kept between jobs (default ~/.cache/layercast)")
	fl.BoolVar(&f.noNodeCache, "no-node-cache", false, "keep no node binary on the hosts between jobs (default: ~/.cache/layercast of the login user; see `layercast clean`)")
	fl.StringVar(&f.nodeBinDir, "node-binary-dir", "", "take node binaries from this directory instead of the built-in ones")
	fl.StringVar(&f.logFile, "log-file", "", "write logs to this file")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "debug logs")
	_ = fl.MarkHidden("node-binary-dir")
	f.registerCompletions(cmd)
}

func (f *jobFlags) options() (orchestrator.Options, error) {
	maxRate, err := byterate.Parse(f.maxRate)
	if err != nil {
		return orchestrator.Options{}, fmt.Errorf("--max-rate: %w", err)
	}
	hostMaxRate, err := byterate.Parse(f.hostMaxRate)
	if err != nil {
		return orchestrator.Options{}, fmt.Errorf("--host-max-rate: %w", err)
	}
	opts := orchestrator.Options{
		Source:            orchestrator.Source(f.source),
		Compress:          imagecache.Compression(f.compress),
		MaxRate:           maxRate,
		HostMaxRate:       hostMaxRate,
		InventoryPath:     f.inventory,
		Hosts:             f.hosts,
		Groups:            f.groups,
		Image:             f.image,
		Mode:              orchestrator.Mode(f.mode),
		Tunnel:            f.tunnel,
		BastionAddr:       f.bastionAddr,
		Concurrency:       f.concurrency,
		UploadConcurrency: f.uploadConcurrency,
		AcceptNewHostKeys: f.acceptNew,
		AnnounceInterval:  f.announce,
		Timeout:           f.timeout,
		StallTimeout:      f.stallTimeout,
		ConnectTimeout:    f.connectTimeout,
		SetupTimeout:      f.setupTimeout,
		CheckTimeout:      f.checkTimeout,
		ImportTimeout:     f.importTimeout,
		CacheDir:          f.cacheDir,
		NoNodeCache:       f.noNodeCache,
	}
	return opts, opts.Validate()
}

// logger writes to the log file if one is set, else to stderr at warn
// level (debug with -v), never to stdout.
func (f *jobFlags) logger() (*slog.Logger, func(), error) {
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	closeFn := func() {}
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closeFn = lf, func() { lf.Close() }
		if !f.verbose {
			level = slog.LevelInfo
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closeFn, nil
}

// setup turns the flags into job options and an engine with its logger.
// Its errors carry their exit codes; call done when finished.
func (f *jobFlags) setup() (orchestrator.Options, *orchestrator.Engine, *slog.Logger, func(), error) {
	opts, err := f.options()
	if err != nil {
		return opts, nil, nil, nil, usageErr(err)
	}
	log, closeLog, err := f.logger()
	if err != nil {
		return opts, nil, nil, nil, usageErr(err)
	}
	eng, err := newEngine(f.nodeBinDir, log)
	if err != nil {
		closeLog()
		return opts, nil, nil, nil, &exitCodeError{code: exitError, err: err}
	}
	return opts, eng, log, closeLog, nil
}

func usageErr(err error) error { return &exitCodeError{code: exitUsage, err: err} }

func newRunCmd() *cobra.Command {
	var jf jobFlags
	var asJSON bool
	var reportFile, summaryFile, retryFailed string
	var dryRun bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "run -i INVENTORY [--group G | --hosts a,b] IMAGE",
		Short: "Distribute an image to the selected hosts, headless",
		Long: `run takes IMAGE to every selected host and exits when each host has it or
has failed. The image comes from this machine's Docker daemon when it holds
it, else straight from its registry (no daemon needed); --source chooses.
From a registry, an index gives each host the image of its own platform.
Progress goes to stdout as plain lines, or as JSON lines with --json.

Every phase on a host has a deadline (--connect-timeout, --setup-timeout,
--check-timeout, --stall-timeout, --import-timeout; 0 turns one off): a host
that misses one fails with the reason, the others go on.

Exit codes: 0 every host has the image; 1 some hosts failed; 2 bad usage,
inventory or image (no host was touched); 3 the bastion itself failed;
130 interrupted (the job was torn down).`,
		Example: `  layercast run -i inventory.yaml registry.example:5000/app:v2
  layercast run -i hosts.ini --group web --json app:v2 > events.jsonl
  layercast run -i inventory.yaml --retry-failed report.json app:v2`,
		Args: exactArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			jf.image = args[0]
			if retryFailed != "" {
				hosts, err := failedHostsFrom(retryFailed)
				if err != nil {
					return usageErr(err)
				}
				jf.hosts, jf.groups = hosts, nil
			}
			if dryRun {
				return runPlan(cmd, &jf, asJSON)
			}
			opts, eng, _, done, err := jf.setup()
			if err != nil {
				return err
			}
			defer done()
			var sink orchestrator.Sink
			if asJSON {
				sink = newJSONPrinter(cmd.OutOrStdout(), every)
			} else {
				sink = newPlainPrinter(cmd.OutOrStdout(), every)
			}
			rep, err := eng.Run(cmd.Context(), opts, sink)
			if rep != nil {
				if werr := writeReports(rep, reportFile, summaryFile); werr != nil && err == nil {
					err = werr
				}
			}
			return exitFor(cmd.Context(), rep, err)
		},
	}
	jf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON-line events and the final report instead of text")
	cmd.Flags().StringVar(&reportFile, "report", "", "also write the final JSON report to this file")
	cmd.Flags().StringVar(&summaryFile, "summary", "", "write a Markdown summary to this file (e.g. $GITHUB_STEP_SUMMARY)")
	cmd.Flags().StringVar(&retryFailed, "retry-failed", "", "run only the hosts that failed in this JSON report")
	cmd.Flags().DurationVar(&every, "progress-interval", 2*time.Second, "how often progress is printed")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only show what the run would move (as `layercast plan`)")
	return cmd
}

// exitFor maps a job's outcome to an exit code.
func exitFor(ctx context.Context, rep *orchestrator.Report, err error) error {
	switch {
	case errors.Is(err, orchestrator.ErrConfig):
		return usageErr(err)
	case rep != nil && rep.TimedOut:
		return &exitCodeError{code: exitFailed, err: fmt.Errorf("the job's --timeout ran out; %d of %d hosts did not get the image", len(rep.Failed()), len(rep.Hosts))}
	case rep != nil && rep.Cancelled, ctx.Err() != nil:
		if err == nil {
			err = errors.New("interrupted; the job was torn down")
		}
		return &exitCodeError{code: exitCancelled, err: err}
	case err != nil:
		return &exitCodeError{code: exitError, err: err}
	case rep != nil && len(rep.Failed()) > 0:
		return &exitCodeError{code: exitFailed, err: fmt.Errorf("%d of %d hosts failed", len(rep.Failed()), len(rep.Hosts))}
	}
	return nil
}

func failedHostsFrom(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--retry-failed: %w", err)
	}
	var rep orchestrator.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("--retry-failed: %s is not a layercast JSON report: %w", path, err)
	}
	hosts := rep.Failed()
	if len(hosts) == 0 {
		return nil, fmt.Errorf("--retry-failed: no host failed in %s", path)
	}
	return hosts, nil
}

func writeReports(rep *orchestrator.Report, reportFile, summaryFile string) error {
	if reportFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if err := os.WriteFile(reportFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if summaryFile != "" {
		f, err := os.OpenFile(summaryFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
		defer f.Close()
		writeMarkdown(f, rep)
	}
	return nil
}

func writeMarkdown(w io.Writer, r *orchestrator.Report) {
	failed := r.Failed()
	icon := "✅"
	if len(failed) > 0 || r.Cancelled {
		icon = "❌"
	}
	fmt.Fprintf(w, "### %s layercast: `%s` to %d/%d hosts in %s\n\n", icon, r.Image, len(r.Hosts)-len(failed), len(r.Hosts), r.Duration.Round(100*time.Millisecond))
	fmt.Fprintf(w, "Mode %s · image %s · %s\n\n", mdText(r.Mode), textfmt.Bytes(r.Size), mdText(traffic(r)))
	if r.Unverified != "" {
		fmt.Fprintf(w, "⚠️ Not verified: %s\n\n", mdText(r.Unverified))
	}
	fmt.Fprintln(w, "| host | result | time | from peers | from bastion | layers skipped | error |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, h := range r.Hosts {
		result := string(h.State)
		if h.Unverified {
			result += " (not verified)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d | %s |\n", mdText(h.Host), mdText(result), h.Duration.Round(100*time.Millisecond),
			textfmt.Bytes(h.FromPeers), textfmt.Bytes(h.FromSeeder), h.LayersSkipped, mdText(h.Error))
	}
}

// mdText puts text on one line and backslash-escapes every ASCII
// punctuation character (CommonMark allows escaping any of them), so that
// nothing in it (a host's error, a host name) can open a link, an image,
// HTML, emphasis, code or a table cell in the summary: it renders as the
// text it is.
func mdText(s string) string {
	s = textfmt.OneLine(s)
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 && unicode.IsPunct(r) || r < 0x80 && unicode.IsSymbol(r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of layercast and of the node binaries it carries",
		Example: `  layercast version
  ssh bastion layercast version   # what a remote bastion would upload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return printVersion(cmd.OutOrStdout())
		},
	}
}

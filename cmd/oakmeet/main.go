// Command oakmeet runs the oakmeet video-meeting platform: the control plane
// (serve) and media nodes (node); tools to read its evidence (audit,
// report); and a headless participant (bot) and load generator (bench).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/config"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"serve":   {"run the control plane (with embedded NATS; --demo adds local media nodes)", runServe},
		"node":    {"run a media node from its enrollment", runNode},
		"enroll":  {"write a media node's enrollment: its own NATS credentials and CA", runEnroll},
		"nats":    {"print the NATS server configuration or control credentials of a deployment", runNATS},
		"replica": {"give another control-plane replica the deployment's shared secrets, or its own NATS credentials", runReplica},
		"audit":   {"export or verify the audit log", runAudit},
		"bot":     {"join a meeting as a headless participant publishing test media", runBot},
		"bench":   {"load a deployment with publishers and subscribers and measure delivery", runBench},
		"meeting": {"create a meeting with a host key of its own (meeting create)", runMeeting},
		"host":    {"act as a meeting's host: lock, lobby, admit, deny, remove", runHost},
		"report":  {"show which countries carried a meeting's (or all meetings') traffic", runReport},
		"version": {"print the version", runVersion},
	}
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "oakmeet: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := c.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee exitError
		if errors.As(err, &ee) {
			return int(ee) // the command has said why
		}
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "oakmeet %s: %v\n", args[0], err)
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit status.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "Usage: oakmeet <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'oakmeet <command> --help' for its flags. Every flag can also be set as")
	fmt.Fprintln(w, "OAKMEET_<FLAG> in the environment or as 'flag = value' in a --config file.")
}

// parseFlags parses a command's flags with the environment and config file.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	// The flag package prints every command-line error with the usage
	// before returning it; errors from the environment or config file it
	// does not print. Whether it wrote tells the two apart.
	out := &writeTracker{w: stderr}
	fs.SetOutput(out)
	if err := config.Parse(fs, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if out.wrote {
			return errUsage // already printed
		}
		return err
	}
	return nil
}

// writeTracker remembers whether anything was written through it.
type writeTracker struct {
	w     io.Writer
	wrote bool
}

func (t *writeTracker) Write(p []byte) (int, error) {
	t.wrote = true
	return t.w.Write(p)
}

// processSetup is what serve and node read first: the logger and the
// cluster's timing, which every process of a deployment must share.
func processSetup(stderr io.Writer, level string, heartbeat time.Duration) (*slog.Logger, cluster.Timing, error) {
	log, err := newLogger(stderr, level)
	if err != nil {
		return nil, cluster.Timing{}, err
	}
	timing, err := cluster.TimingForHeartbeat(heartbeat)
	if err != nil {
		return nil, cluster.Timing{}, fmt.Errorf("--heartbeat-interval: %w", err)
	}
	return log, timing, nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		if v != "" {
			return v
		}
	}
	return "(devel)"
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "oakmeet", version())
	return nil
}

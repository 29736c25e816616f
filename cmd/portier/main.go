// Command portier is the portier broker and its tools in one binary: serve
// (the broker), status, services, dial, metrics, doctor, bench and demo.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
)

// Exit statuses. exitAlreadyRunning lets scripts and the client's
// auto-start tell "another broker serves this socket" from a failure.
const (
	exitOK             = 0
	exitFailure        = 1
	exitUsage          = 2
	exitAlreadyRunning = 3
)

type command struct {
	name    string
	summary string
	// help opens `portier NAME -h`: a sentence (or a few) saying what the
	// command does. example is one or more command lines showing it in use.
	help    string
	example string
	// synopsis follows "portier NAME" in the usage line; "[flags]" when
	// empty.
	synopsis string
	run      func(args []string, stdout, stderr io.Writer) int
	hidden   bool
}

var commands []command

func register(c command) { commands = append(commands, c) }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return versionCmd(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "portier: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "portier: a per-user local service broker that hands connections to backends.")
	fmt.Fprintln(w, "\nUsage: portier <command> [flags]\n\nCommands:")
	cs := append([]command(nil), commands...)
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		if !c.hidden {
			fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'portier <command> -h' for what a command does, an example and its flags;")
	fmt.Fprintln(w, "'portier --version' for the version.")
}

// lookupCommand finds a registered command by name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// newFlagSet builds a flag set that reports errors instead of exiting and
// whose -h prints the command's help, an example and its flags.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("portier "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(stderr, name, fs) }
	return fs
}

// printHelp writes `portier NAME -h`: what the command does, the usage
// line, an example, then the flags.
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c, _ := lookupCommand(name)
	if c.help != "" {
		fmt.Fprintf(w, "%s\n\n", c.help)
	} else if c.summary != "" {
		fmt.Fprintf(w, "%s%s.\n\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	}
	synopsis := c.synopsis
	if synopsis == "" {
		synopsis = "[flags]"
	}
	fmt.Fprintf(w, "Usage: portier %s %s\n", name, synopsis)
	if c.example != "" {
		fmt.Fprintln(w, "\nExample:")
		for _, line := range strings.Split(c.example, "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
}

// parseFlags parses a command that takes no positional arguments, mapping
// -h, bad flags and stray arguments to exit statuses.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	return parseArgs(fs, args, 0)
}

// parseArgs parses flags and allows at most maxArgs positional arguments:
// an argument the command does not take is a usage error rather than
// something silently ignored (`portier serve extra` does not serve).
func parseArgs(fs *flag.FlagSet, args []string, maxArgs int) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\nRun '%s -h' for usage.\n", fs.Name(), fs.Arg(maxArgs), fs.Name())
		return exitUsage, false
	}
	return 0, true
}

// newLogger builds the slog logger for --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

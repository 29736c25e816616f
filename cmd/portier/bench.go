package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/portier/portier/internal/bench"
)

func init() {
	register(command{name: "bench", run: benchCmd,
		summary: "measure direct, handoff, reconnect, fast path and proxy: latency, conns/s, CPU, wakeups, MB/s, cold start, RSS",
		help: "Measure the routes a connection can take. It starts a broker, an echo backend, a copying proxy and\n" +
			"client processes in a private temporary directory, measures, and removes everything it started.\n" +
			"Measuring needs Linux; --from renders a saved report anywhere.",
		example: "portier bench --quick\nportier bench --json > bench.json && portier bench --from bench.json --markdown"})
	register(command{name: bench.ClientCommand, hidden: true, summary: "the bench's load generator (one process per phase)",
		run: func(args []string, stdout, stderr io.Writer) int {
			return benchChildExit("bench client", bench.ClientMain(args, os.Stdin, stdout, stderr), stderr)
		}})
	register(command{name: bench.ProxyCommand, hidden: true, summary: "the bench's copying proxy (what a proxying broker would cost)",
		run: func(args []string, stdout, stderr io.Writer) int {
			return benchChildExit("bench proxy", bench.ProxyMain(args, stdout, stderr), stderr)
		}})
	register(command{name: bench.StallCommand, hidden: true, summary: "a backend that never becomes ready (the bench's slow start)",
		run: func([]string, io.Writer, io.Writer) int { bench.StallMain(); return exitOK }})
}

// benchChildExit maps the result of one of the bench's hidden commands to
// an exit status.
func benchChildExit(name string, err error, stderr io.Writer) int {
	var usage *bench.UsageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, name+":", err)
		return exitUsage
	}
	fmt.Fprintln(stderr, name+":", err)
	return exitFailure
}

func benchCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", stderr)
	cfg := bench.DefaultConfig()
	fs.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds; each runs every strategy, in an order rotated by one per round")
	fs.IntVar(&cfg.ConnsC1, "conns", cfg.ConnsC1, "measured connections per strategy at concurrency 1, per round")
	fs.IntVar(&cfg.ConnsC16, "conns-c16", cfg.ConnsC16, "measured connections per strategy at concurrency 16, per round")
	fs.IntVar(&cfg.ConnsCurve, "conns-curve", cfg.ConnsCurve, "measured connections at the concurrency curve's other levels (4 and 64), per round")
	fs.IntVar(&cfg.Warmup, "warmup", cfg.Warmup, "warm-up connections before each measured phase")
	fs.DurationVar(&cfg.Stream, "stream", cfg.Stream, "how long each streaming phase writes")
	fs.IntVar(&cfg.ColdSamples, "cold", cfg.ColdSamples, "cold starts measured per round")
	fs.IntVar(&cfg.Herd, "herd", cfg.Herd, "concurrent Hellos to a stopped service, once per round")
	fs.IntVar(&cfg.RSSConns, "rss-conns", cfg.RSSConns, "pending connections for the broker RSS measurement (0: skip)")
	fs.IntVar(&cfg.RSSProcs, "rss-procs", cfg.RSSProcs, "client processes holding those connections")
	fs.IntVar(&cfg.ServeProcs, "serve-procs", cfg.ServeProcs, "GOMAXPROCS of the broker (serve --procs; 0: its default)")
	fs.IntVar(&cfg.BackendProcs, "backend-procs", cfg.BackendProcs, "GOMAXPROCS of the echo backends (0: Go's default)")
	noEarly := fs.Bool("no-early", false, "skip the handoff+early and reconnect+early rows")
	fs.BoolVar(&cfg.Quick, "quick", false, "a short run (under a minute): 3 rounds, fewer connections, 0.5 s streams")
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	asMarkdown := fs.Bool("markdown", false, "print markdown tables (for docs/PERFORMANCE.md)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	from := fs.String("from", "", "print the report saved by an earlier --json run instead of measuring")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if cfg.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"rounds":      func() { cfg.Rounds = 3 },
			"conns":       func() { cfg.ConnsC1 = 600 },
			"conns-c16":   func() { cfg.ConnsC16 = 1500 },
			"conns-curve": func() { cfg.ConnsCurve = 1500 },
			"warmup":      func() { cfg.Warmup = 100 },
			"stream":      func() { cfg.Stream = 500 * time.Millisecond },
			"cold":        func() { cfg.ColdSamples = 1 },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	cfg.Early = !*noEarly
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "portier bench:", err)
		return exitUsage
	}
	if *asJSON && *asMarkdown {
		fmt.Fprintln(stderr, "portier bench: --json and --markdown exclude each other")
		return exitUsage
	}
	var rep *bench.Report
	if *from != "" {
		f, err := os.Open(*from)
		if err == nil {
			rep, err = bench.ReadReport(f)
			f.Close()
		}
		if err != nil {
			fmt.Fprintln(stderr, "portier bench:", err)
			return exitFailure
		}
	} else {
		progress := stderr
		if *quiet {
			progress = io.Discard
		}
		var err error
		rep, err = bench.Run(context.Background(), cfg, bench.Options{Admin: adminCall, Progress: progress})
		if err != nil {
			fmt.Fprintln(stderr, "portier bench:", err)
			return exitFailure
		}
		rep.Command = strings.TrimSpace("portier bench " + strings.Join(args, " "))
	}
	var err error
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	case *asMarkdown:
		err = rep.WriteMarkdown(stdout)
	default:
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "portier bench:", err)
		return exitFailure
	}
	return exitOK
}

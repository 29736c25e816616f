//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/portier/portier/broker"
)

func init() {
	register(command{name: "serve", summary: "run the broker (normally started by the first client)", run: serveCmd})
}

func serveCmd(args []string, _, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	socket := fs.String("socket", defaultSocket(), "broker socket (env PORTIER_SOCKET)")
	services := fs.String("services", defaultServicesDir(), "directory of service definitions (<name>.toml)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	procs := fs.Int("procs", 0, "GOMAXPROCS for the broker (0 = Go's default)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if !needSocket("serve", *socket, stderr) {
		return exitUsage
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitUsage
	}
	b, err := broker.New(broker.Config{Socket: *socket, ServicesDir: *services, Logger: log})
	if err != nil {
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := b.Serve(ctx); err != nil {
		if errors.Is(err, broker.ErrAlreadyRunning) {
			fmt.Fprintf(stderr, "portier serve: a broker is already running on %s\n", *socket)
			return exitAlreadyRunning
		}
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitFailure
	}
	return exitOK
}

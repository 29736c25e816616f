package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/signal"
	"syscall"

	"github.com/portier/portier/backend"
)

func init() {
	register(command{name: "__echo-backend", hidden: true, run: echoBackendCmd,
		summary: "the demo's echo backend (lets the demo and bench run with nothing else built)"})
}

// echoBackendCmd is a portier backend that echoes bytes until the client
// half-closes. It serves under a broker (PORTIER_* environment) or on
// --listen standalone.
func echoBackendCmd(args []string, _, stderr io.Writer) int {
	fs := newFlagSet("__echo-backend", stderr)
	listen := fs.String("listen", "", "standalone endpoint (without a broker)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := backend.Listen(ctx, backend.Address(*listen))
	if err != nil {
		fmt.Fprintln(stderr, "echo backend:", err)
		return exitFailure
	}
	context.AfterFunc(ctx, func() { l.Close() })
	if err := serveEcho(l); err != nil {
		fmt.Fprintln(stderr, "echo backend:", err)
		return exitFailure
	}
	// Stopped (quiesced by the broker, or a signal): let the connections
	// in progress finish.
	if err := l.Shutdown(context.Background()); err != nil {
		fmt.Fprintln(stderr, "echo backend:", err)
		return exitFailure
	}
	return exitOK
}

// serveEcho echoes on every accepted connection until the listener closes.
func serveEcho(l net.Listener) error {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

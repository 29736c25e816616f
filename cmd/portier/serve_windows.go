//go:build windows

package main

import (
	"context"
	"net"
	"os"
	"syscall"

	"github.com/portier/portier/broker"
)

const serveHelp = "Run the broker in the foreground until Ctrl+C (or the console closes). Clients started with\n" +
	"client.AutoStart run it for you. It serves the per-user named pipe \\\\.\\pipe\\portier-<hash of your SID>."

// stopSignals end `portier serve`: Go delivers Ctrl+C and Ctrl+Break as
// os.Interrupt, and closing the console, logoff and shutdown as SIGTERM.
var stopSignals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// readinessHooks: no service manager to tell.
func readinessHooks(interface{ Warn(string, ...any) }) (onReady, onStopping func()) { return nil, nil }

// activatedListener: Windows has no socket activation; the broker creates
// its named pipe itself.
func activatedListener() (*net.UnixListener, error) { return nil, nil }

// reloadOnHangup: Windows has no SIGHUP. What it would trigger at once
// (Broker.Reload) the broker's janitor does every second anyway.
func reloadOnHangup(context.Context, *broker.Broker, interface{ Info(string, ...any) }) func() {
	return func() {}
}

//go:build unix

package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/portier/portier/broker"
)

const serveHelp = "Run the broker in the foreground until SIGTERM or SIGINT; SIGHUP makes it check its backends against\n" +
	"the current definitions at once (retiring those whose version, launch or program changed). Clients\n" +
	"started with client.AutoStart run it for you, and 'portier install' makes the login session's service\n" +
	"manager run it; under systemd it takes its socket by socket activation (LISTEN_FDS) and reports\n" +
	"readiness (READY=1)."

// stopSignals end `portier serve`.
var stopSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

// readinessHooks tell a Type=notify unit READY=1 and STOPPING=1; without
// NOTIFY_SOCKET they do nothing.
func readinessHooks(log interface{ Warn(string, ...any) }) (onReady, onStopping func()) {
	return func() { sdNotify(log, daemon.SdNotifyReady) }, func() { sdNotify(log, daemon.SdNotifyStopping) }
}

// sdNotify tells systemd about the broker's state; a failure is logged,
// never fatal: the broker serves either way.
func sdNotify(log interface{ Warn(string, ...any) }, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}

// reloadOnHangup makes SIGHUP re-check the backends against the current
// definitions (Broker.Reload) until ctx ends, instead of ending the broker
// (SIGHUP's default action, which a closed terminal or `kill -HUP` would
// otherwise trigger). The returned function stops it.
func reloadOnHangup(ctx context.Context, b *broker.Broker, log interface{ Info(string, ...any) }) func() {
	ctx, cancel := context.WithCancel(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: checking backends against the definitions")
				b.Reload()
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}

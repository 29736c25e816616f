//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/portier/portier/broker"
)

func init() {
	register(command{name: "serve", summary: "run the broker (normally started by the first client or a login unit)", run: serveCmd,
		help: "Run the broker in the foreground until SIGTERM or SIGINT; SIGHUP makes it check its backends against\n" +
			"the current definitions at once (retiring those whose version, launch or program changed). Clients\n" +
			"started with client.AutoStart run it for you, and 'portier install' makes the login session's service\n" +
			"manager run it; under systemd it takes its socket by socket activation (LISTEN_FDS) and reports\n" +
			"readiness (READY=1).",
		example: "portier serve --log-level debug\nportier serve --metrics-listen 127.0.0.1:9464"})
}

// metricsShutdown bounds how long serve waits for metric scrapes in
// progress when it stops.
const metricsShutdown = 2 * time.Second

func serveCmd(args []string, _, stderr io.Writer) int {
	fs := newFlagSet("serve", stderr)
	socket := fs.String("socket", "", "broker socket (default: the socket systemd hands over, else $PORTIER_SOCKET, else the per-user default)")
	services := fs.String("services", defaultServicesDir(), "directory of service definitions (<name>.toml)")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFile := fs.String("log-file", "", "append logs to this file, kept under 1 MiB (the newer half of a full log moves to FILE.1); default stderr")
	metricsListen := fs.String("metrics-listen", "", "serve Prometheus metrics at http://ADDR/metrics (host:port on a loopback address; off when empty)")
	metricsRemote := fs.Bool("metrics-allow-remote", false, "allow --metrics-listen on a non-loopback address (the endpoint has no authentication)")
	procs := fs.Int("procs", 0, "GOMAXPROCS for the broker (0 = Go's default)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var logOut io.Writer = stderr
	if *logFile != "" {
		f, err := openCappedLog(*logFile, brokerLogCap)
		if err != nil {
			fmt.Fprintln(stderr, "portier serve:", err)
			return exitFailure
		}
		defer f.Close()
		logOut = f
	}
	log, err := newLogger(logOut, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitUsage
	}
	var metricsLn net.Listener
	if *metricsListen != "" {
		if err := checkMetricsAddr(*metricsListen, *metricsRemote); err != nil {
			fmt.Fprintln(stderr, "portier serve:", err)
			return exitUsage
		}
	}

	// Under socket activation the service manager bound the socket; its
	// path is the broker's.
	activated, err := activatedListener()
	if err != nil {
		fmt.Fprintln(stderr, "portier serve: socket activation:", err)
		return exitFailure
	}
	cfg := broker.Config{Socket: *socket, ServicesDir: *services, Logger: log}
	if activated != nil {
		cfg.Listener = activated
		log.Info("socket handed over by the service manager", "socket", activated.Addr().String())
	} else if cfg.Socket == "" {
		cfg.Socket = defaultSocket()
		if !needSocket("serve", cfg.Socket, stderr) {
			return exitUsage
		}
	}
	// READY=1 and STOPPING=1 for a Type=notify unit; without NOTIFY_SOCKET
	// these do nothing.
	cfg.OnReady = func() { sdNotify(log, daemon.SdNotifyReady) }
	cfg.OnStopping = func() { sdNotify(log, daemon.SdNotifyStopping) }
	b, err := broker.New(cfg)
	if err != nil {
		if activated != nil {
			activated.Close()
		}
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitUsage
	}
	if *metricsListen != "" {
		if metricsLn, err = net.Listen("tcp", *metricsListen); err != nil {
			if activated != nil {
				activated.Close()
			}
			fmt.Fprintln(stderr, "portier serve: --metrics-listen:", err)
			return exitFailure
		}
		stopMetrics := serveMetrics(metricsLn, b, log)
		defer stopMetrics()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	defer reloadOnHangup(ctx, b, log)()
	if err := b.Serve(ctx); err != nil {
		if errors.Is(err, broker.ErrAlreadyRunning) {
			log.Error("a broker is already running", "socket", cfg.Socket, "err", err)
			fmt.Fprintf(stderr, "portier serve: a broker is already running on %s\n", cfg.Socket)
			return exitAlreadyRunning
		}
		log.Error("broker failed", "err", err)
		fmt.Fprintln(stderr, "portier serve:", err)
		return exitFailure
	}
	return exitOK
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

// sdNotify tells systemd about the broker's state; a failure is logged,
// never fatal: the broker serves either way.
func sdNotify(log interface{ Warn(string, ...any) }, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("cannot notify the service manager", "state", state, "err", err)
	}
}

// serveMetrics serves /metrics on ln until the returned function is
// called. Every phase of a request has a deadline.
func serveMetrics(ln net.Listener, b *broker.Broker, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) func() {
	mux := http.NewServeMux()
	mux.Handle("/metrics", b.MetricsHandler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
	done := make(chan struct{})
	log.Info("metrics listening", "addr", ln.Addr().String(), "url", "http://"+ln.Addr().String()+"/metrics")
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics endpoint stopped", "err", err)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/signal"
	"runtime"
	"time"

	"github.com/portier/portier/broker"
)

func init() {
	register(command{name: "serve", summary: "run the broker (normally started by the first client or a login unit)", run: serveCmd,
		help:    serveHelp,
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
	procs := fs.Int("procs", 0, "GOMAXPROCS for the broker (0 = Go's default; 1 costs less CPU per connection but makes backend starts slower, see docs/PERFORMANCE.md)")
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
	cfg.OnReady, cfg.OnStopping = readinessHooks(log)
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
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
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

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portier/portier/broker"
	"github.com/portier/portier/client"
)

func init() {
	register(command{name: "demo", summary: "run a broker and an echo backend; compare handoff, reconnect and direct", run: demoCmd,
		help: "Start a broker and the echo backend in a private temporary directory, connect clients by handoff,\n" +
			"by reconnect and directly, print the latency of each route, and remove everything it started.",
		example: "portier demo\nportier demo -conns 50 -v"})
}

// demoCmd is the README's first command: everything it starts it stops, and
// everything it writes it removes.
func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("demo", stderr)
	n := fs.Int("conns", 300, "connections per route")
	verbose := fs.Bool("v", false, "show the broker's logs")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := runDemo(*n, *verbose, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "portier demo:", err)
		return exitFailure
	}
	return exitOK
}

func runDemo(n int, verbose bool, stdout, stderr io.Writer) error {
	if n < 1 {
		return errors.New("--conns must be at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "portier-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	svcDir := filepath.Join(dir, "services")
	if err := makePrivateDir(svcDir); err != nil {
		return err
	}
	// The broker's endpoint and state directory, both gone with dir.
	sock, stateDir, err := demoEndpoint(dir)
	if err != nil {
		return err
	}
	def := fmt.Sprintf("name = \"echo\"\nversion = \"1.0.0\"\ncommand = [%s, \"__echo-backend\"]\nidle_timeout = \"0\"\n", strconv.Quote(exe))
	if err := os.WriteFile(filepath.Join(svcDir, "echo.toml"), []byte(def), 0o600); err != nil {
		return err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	b, err := broker.New(broker.Config{
		Socket: sock, ServicesDir: svcDir, StateDir: stateDir,
		Logger:             slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
		StopBackendsOnExit: true,
	})
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	defer func() {
		stop()
		<-served
	}()

	select {
	case <-b.Listening():
	case err := <-served:
		served <- err // for the deferred receive
		return fmt.Errorf("broker: %w", err)
	}
	fmt.Fprintf(stdout, "portier demo: broker on %s, echo backend defined in %s\n", sock, svcDir)
	start := time.Now()
	cold, err := roundTrip(sock, client.ReadyTimeout(2*time.Second))
	if err != nil {
		return fmt.Errorf("first connection (starts the backend): %w", err)
	}
	fmt.Fprintf(stdout, "first connection started the backend and was served by %s in %s\n\n",
		cold, time.Since(start).Round(10*time.Microsecond))

	routes := []struct {
		name string
		opts []client.Option
	}{
		// The handoff and reconnect rows ask the broker every time: the
		// default fast path would take the direct route after the first.
		{"handoff", []client.Option{client.NoHelloSkip()}},
		{"reconnect", []client.Option{client.NoHandoff(), client.NoHelloSkip()}},
		{"direct", nil},
	}
	// The hello-skip cache learns the backend's endpoint from a Hello: make
	// that Hello now, untimed, so the direct row is direct connections only.
	if _, err := roundTrip(sock); err != nil {
		return fmt.Errorf("hello-skip warm-up connection: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "route\tconnections\tp50\tp99\tserved by\t")
	for _, r := range routes {
		lat := make([]time.Duration, 0, n)
		got := map[client.Route]int{}
		for i := 0; i < n; i++ {
			t0 := time.Now()
			route, err := roundTrip(sock, r.opts...)
			if err != nil {
				return fmt.Errorf("%s connection %d: %w", r.name, i, err)
			}
			lat = append(lat, time.Since(t0))
			got[route]++
		}
		slices.Sort(lat)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", r.name, n, pct(lat, 0.50), pct(lat, 0.99), routesString(got))
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\neach connection: connect through the broker, write 64 bytes, read the echo, close")
	return nil
}

// roundTrip connects to the echo service, writes 64 bytes and reads them
// back.
func roundTrip(sock string, opts ...client.Option) (client.Route, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "echo", append([]client.Option{client.Socket(sock)}, opts...)...)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var msg, back [64]byte
	copy(msg[:], "portier demo: 64 bytes through a brokered connection...........")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg[:]); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, back[:]); err != nil {
		return 0, err
	}
	if back != msg {
		return 0, errors.New("echo mismatch")
	}
	return c.Route(), nil
}

func pct(sorted []time.Duration, q float64) string {
	i := int(q * float64(len(sorted)-1))
	return sorted[i].Round(time.Microsecond).String()
}

func routesString(m map[client.Route]int) string {
	var parts []string
	for r, k := range m {
		parts = append(parts, fmt.Sprintf("%s×%d", r, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

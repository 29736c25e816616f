package portiertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/broker"
	"github.com/portier/portier/client"
)

// RoleEnv is the variable that tells a test binary started as a backend
// which role to play (see BackendMain). It does not start with PORTIER_,
// which the broker strips from a backend's environment.
const RoleEnv = "PORTIERTEST_ROLE"

// DefaultVersion is the version of a Service that names none.
const DefaultVersion = "1.0.0"

// stopWait bounds how long Close waits for the broker and its backends.
const stopWait = 30 * time.Second

// Service is one service definition for the broker.
type Service struct {
	// Name is the service name: 1 to 64 of a-z, 0-9 and '-'.
	Name string
	// Version is the version the backend serves (default DefaultVersion).
	Version string
	// Command is the backend's executable (an absolute path) and arguments.
	// Leave it empty and set Role to run this test binary instead.
	Command []string
	// Role, with Command empty, makes the backend this test binary started
	// again with RoleEnv=Role; BackendMain in TestMain turns it into the
	// backend.
	Role string
	// Env is added to the backend's environment.
	Env map[string]string
	// TOML is appended to the definition as is, for the other keys:
	// handoff = false, activation = "listen-fds", idle_timeout = "1s", ...
	TOML string
}

// definition renders s as the <name>.toml the broker reads.
func (s Service) definition() (string, error) {
	if s.Name == "" {
		return "", errors.New("portiertest: Service.Name is empty")
	}
	version := s.Version
	if version == "" {
		version = DefaultVersion
	}
	command := s.Command
	env := map[string]string{}
	for k, v := range s.Env {
		env[k] = v
	}
	switch {
	case len(command) == 0 && s.Role == "":
		return "", fmt.Errorf("portiertest: service %q has neither a Command nor a Role", s.Name)
	case len(command) == 0:
		exe, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("portiertest: find the test binary for role %q: %w", s.Role, err)
		}
		// -test.run=^$: should BackendMain not be called, the binary runs
		// no tests (and the start fails) rather than every test again.
		command = []string{exe, "-test.run=^$"}
		env[RoleEnv] = s.Role
	case s.Role != "":
		return "", fmt.Errorf("portiertest: service %q has both a Command and a Role; set one", s.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "name = %s\nversion = %s\ncommand = [", strconv.Quote(s.Name), strconv.Quote(version))
	for i, a := range command {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(a))
	}
	b.WriteString("]\n")
	if len(env) > 0 {
		keys := make([]string, 0, len(env))
		for k := range env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("env = { ")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s = %s", strconv.Quote(k), strconv.Quote(env[k]))
		}
		b.WriteString(" }\n")
	}
	if s.TOML != "" {
		b.WriteString(s.TOML)
		b.WriteString("\n")
	}
	return b.String(), nil
}

// Broker is a running broker and its temporary directory.
type Broker struct {
	// Socket is the broker's endpoint (a Unix socket in Dir, a named
	// pipe of its own on Windows); pass it to clients with client.Socket,
	// or use Dial.
	Socket string
	// ServicesDir holds the definitions; Define adds or replaces one.
	ServicesDir string
	// Dir is the temporary directory holding them (and on Windows the
	// broker's state), removed by Close.
	Dir string

	stop      context.CancelFunc
	served    chan error
	closeOnce sync.Once
	closeErr  error
}

// NewBroker starts a broker with the given services and stops it when tb
// and its subtests end (tb.Cleanup); a failure to start fails tb. Broker
// logs go to tb.Log.
func NewBroker(tb testing.TB, services ...Service) *Broker {
	tb.Helper()
	b, err := StartBroker(slog.New(slog.NewTextHandler(tbWriter{tb: tb}, &slog.HandlerOptions{Level: slog.LevelDebug})), services...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := b.Close(); err != nil {
			tb.Error(err)
		}
	})
	return b
}

// StartBroker starts a broker with the given services, logging to log (nil
// discards the logs). The caller must Close it.
func StartBroker(log *slog.Logger, services ...Service) (*Broker, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// os.MkdirTemp rather than t.TempDir: a socket path must stay under
	// about 100 bytes, and t.TempDir embeds the test's name.
	dir, err := os.MkdirTemp("", "portiertest")
	if err != nil {
		return nil, fmt.Errorf("portiertest: %w", err)
	}
	b := &Broker{Dir: dir, Socket: endpoint(dir), ServicesDir: filepath.Join(dir, "services")}
	fail := func(err error) (*Broker, error) {
		removeAll(dir)
		return nil, err
	}
	if err := os.Mkdir(b.ServicesDir, 0o700); err != nil {
		return fail(fmt.Errorf("portiertest: %w", err))
	}
	for _, s := range services {
		if err := b.Define(s); err != nil {
			return fail(err)
		}
	}
	bk, err := broker.New(broker.Config{Socket: b.Socket, ServicesDir: b.ServicesDir, StateDir: stateDir(dir),
		Logger: log, StopBackendsOnExit: true})
	if err != nil {
		return fail(fmt.Errorf("portiertest: %w", err))
	}
	ctx, stop := context.WithCancel(context.Background())
	b.stop, b.served = stop, make(chan error, 1)
	go func() { b.served <- bk.Serve(ctx) }()
	select {
	case <-bk.Listening():
		return b, nil
	case err := <-b.served:
		stop()
		return fail(fmt.Errorf("portiertest: broker: %w", err))
	}
}

// Define writes (or replaces) a service definition; the broker reads it at
// the next Hello for that service.
func (b *Broker) Define(s Service) error {
	def, err := s.definition()
	if err != nil {
		return err
	}
	path := filepath.Join(b.ServicesDir, s.Name+".toml")
	// Write and rename, so the broker never reads half a definition.
	tmp := filepath.Join(b.ServicesDir, "."+s.Name+".toml.tmp")
	if err := os.WriteFile(tmp, []byte(def), 0o600); err != nil {
		return fmt.Errorf("portiertest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("portiertest: %w", err)
	}
	return nil
}

// Dial connects to service through this broker: client.Dial with
// client.Socket(b.Socket) and opts.
func (b *Broker) Dial(ctx context.Context, service string, opts ...client.Option) (*client.Conn, error) {
	return client.Dial(ctx, service, append([]client.Option{client.Socket(b.Socket)}, opts...)...)
}

// Close stops the broker and its backends (quiesce, then SIGKILL, or on
// Windows the end of their job object, after the broker's shutdown grace) and removes the temporary directory. It is
// safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.stop()
		t := time.NewTimer(stopWait)
		defer t.Stop()
		select {
		case err := <-b.served:
			if err != nil {
				b.closeErr = fmt.Errorf("portiertest: broker: %w", err)
			}
		case <-t.C:
			b.closeErr = fmt.Errorf("portiertest: the broker did not stop within %s", stopWait)
		}
		if err := removeAll(b.Dir); err != nil && b.closeErr == nil {
			b.closeErr = fmt.Errorf("portiertest: %w", err)
		}
	})
	return b.closeErr
}

// tbWriter sends log lines to the test's log, and drops them once the test
// has finished (a backend's exit can be logged during cleanup, and logging
// to a finished test panics).
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

//go:build unix

package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/client"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

// roleEnv makes the re-executed test binary act as a backend (or a broker)
// instead of running tests.
const roleEnv = "PTEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	// Helper processes inherit this: a race-enabled binary otherwise sleeps
	// 1 s at exit, which every backend stop and broker exit would wait for.
	if g := os.Getenv("GORACE"); !strings.Contains(g, "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(g+" atexit_sleep_ms=0"))
	}
	goleak.VerifyTestMain(m)
}

// runRole is the body of a helper process.
func runRole(role string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch role {
	case "echo":
		l, err := backend.Listen(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo role:", err)
			return 1
		}
		go func() { <-ctx.Done(); l.Close() }()
		for {
			c, err := l.Accept()
			if err != nil {
				return 0
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	case "fail":
		fmt.Fprintln(os.Stderr, "starting up")
		fmt.Fprintln(os.Stderr, "fatal: the database file is locked")
		return 1
	case "broker":
		b, err := New(Config{Socket: os.Getenv("PORTIER_TEST_SOCKET"), ServicesDir: os.Getenv("PORTIER_TEST_SERVICES"),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := b.Serve(ctx); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if errors.Is(err, ErrAlreadyRunning) {
				return exitAlreadyRunning
			}
			return 4
		}
		return 0
	}
	if run := extraRoles[role]; run != nil {
		return run(ctx)
	}
	fmt.Fprintln(os.Stderr, "unknown role", role)
	return 2
}

// harness is an in-process broker on a private temporary directory.
type harness struct {
	t      *testing.T
	dir    string
	sock   string
	svcDir string
	b      *Broker
	stop   context.CancelFunc
	served chan error
}

// shortTempDir keeps socket paths under the 108-byte sun_path limit.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	dir := shortTempDir(t)
	h := &harness{t: t, dir: dir, sock: filepath.Join(dir, "run", "broker.sock"), svcDir: filepath.Join(dir, "svc")}
	if err := os.Mkdir(h.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Socket: h.sock, ServicesDir: h.svcDir, StopBackendsOnExit: true,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	if tweak != nil {
		tweak(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.served = make(chan error, 1)
	go func() { h.served <- b.Serve(ctx) }()
	t.Cleanup(h.close)
	// Not waitListening: its probe connection, closed without a byte, is
	// answered (and counted) as an incomplete Hello.
	select {
	case <-b.Listening():
	case err := <-h.served:
		t.Fatalf("Serve: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatalf("broker not listening on %s", h.sock)
	}
	return h
}

func (h *harness) waitListening() {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", h.sock)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("broker not listening on %s: %v", h.sock, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) close() {
	h.stop()
	select {
	case err := <-h.served:
		if err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		h.t.Error("broker did not stop within 15s")
	}
}

// testWriter sends broker logs to the test log, and drops them once the test
// has finished (backend exit logs can arrive during cleanup).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// define writes <name>.toml running this test binary in the given role.
func (h *harness) define(name, version, role, extra string) {
	h.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	body := fmt.Sprintf("name = %q\nversion = %q\ncommand = [%s]\nenv = { %s = %q }\n%s",
		name, version, strconv.Quote(exe), roleEnv, role, extra)
	writeFileAtomicTest(h.t, filepath.Join(h.svcDir, name+".toml"), body)
}

func writeFileAtomicTest(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// dial dials service through the harness's broker. Every dial sends a
// Hello (the tests are about the broker): the hello-skip cache is off
// unless opts turn it on.
func (h *harness) dial(service string, opts ...client.Option) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return client.Dial(ctx, service, append([]client.Option{client.Socket(h.sock), client.NoHelloSkip()}, opts...)...)
}

// echo checks that c echoes a message.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
	_ = c.SetDeadline(time.Time{})
}

func (h *harness) spawns(service, result string) int {
	var m dto.Metric
	if err := h.b.metrics.spawns.WithLabelValues(service, result).Write(&m); err != nil {
		h.t.Fatal(err)
	}
	return int(m.GetCounter().GetValue())
}

// eventually polls cond until it holds or the deadline passes. Used only
// for state that another process changes (no channel to wait on).
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer collects log output written from the broker's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

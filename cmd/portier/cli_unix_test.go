//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/broker"
)

// cliWait bounds every wait of these tests; it detects hangs and never
// measures speed.
const cliWait = 20 * time.Second

// testBroker is an in-process broker on a short private temporary
// directory, with the echo service defined as this test binary running the
// hidden __echo-backend command (TestMain turns the re-executed binary into
// the portier command).
type testBroker struct {
	dir, sock, svcDir string
}

// cliTempDir returns a short directory (socket paths stay under 108
// bytes), removed when the test ends.
func cliTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// echoDefinition is the echo service running this binary's __echo-backend.
func echoDefinition(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("name = \"echo\"\nversion = \"1.0.0\"\ncommand = [%s, \"__echo-backend\"]\nidle_timeout = \"0\"\n", strconv.Quote(exe))
}

func startTestBroker(t *testing.T) *testBroker {
	t.Helper()
	dir := cliTempDir(t)
	tb := &testBroker{dir: dir, sock: filepath.Join(dir, "run", "broker.sock"), svcDir: filepath.Join(dir, "svc")}
	if err := os.Mkdir(tb.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tb.svcDir, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Socket: tb.sock, ServicesDir: tb.svcDir, StopBackendsOnExit: true,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("broker Serve: %v", err)
			}
		case <-time.After(cliWait):
			t.Error("broker did not stop")
		}
	})
	select {
	case <-b.Listening():
	case err := <-served:
		t.Fatalf("broker Serve: %v", err)
	}
	return tb
}

// testLog sends broker logs to the test log, and drops them once the test
// has finished (a backend's exit can be logged during cleanup).
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// setDialStdin makes r dial's standard input for the test.
func setDialStdin(t *testing.T, r io.Reader) {
	t.Helper()
	old := dialStdin
	dialStdin = r
	t.Cleanup(func() { dialStdin = old })
}

// TestDialEndToEnd runs `portier dial echo` against a real broker and the
// real echo backend process: bytes typed on stdin come back on stdout while
// stdin is still open, and EOF on stdin half-closes the connection, after
// which the backend finishes and dial returns.
func TestDialEndToEnd(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	for _, tc := range []struct {
		name, route string
		flags       []string
	}{
		{"handoff", "handoff", nil},
		{"reconnect", "reconnect", []string{"--no-handoff"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			setDialStdin(t, inR)
			var stderr bytes.Buffer
			done := make(chan int, 1)
			args := append([]string{"echo", "--socket", tb.sock, "-v"}, tc.flags...)
			go func() {
				code := dialCmd(args, outW, &stderr)
				outW.Close()
				done <- code
			}()
			out := bufio.NewReader(outR)
			for _, line := range []string{"hello\n", "portier\n"} {
				if _, err := io.WriteString(inW, line); err != nil {
					t.Fatal(err)
				}
				got, err := readLine(out)
				if err != nil || got != line {
					t.Fatalf("echo: got %q, %v; want %q", got, err, line)
				}
			}
			// Bytes after which stdin ends: the backend still echoes them
			// once it sees the half-close, then closes.
			io.WriteString(inW, "tail")
			inW.Close()
			rest, err := io.ReadAll(out)
			if err != nil || string(rest) != "tail" {
				t.Errorf("after stdin EOF: got %q, %v; want \"tail\"", rest, err)
			}
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("dial exited %d: %s", code, stderr.String())
				}
			case <-time.After(cliWait):
				t.Fatal("dial did not return after stdin EOF")
			}
			want := "portier dial: echo@1.0.0 route=" + tc.route + " connection="
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("-v: stderr %q lacks %q", stderr.String(), want)
			}
		})
	}

	t.Run("stdin closed at once", func(t *testing.T) {
		setDialStdin(t, strings.NewReader("one shot"))
		code, out, errOut := runCmd("dial", "echo", "--socket", tb.sock)
		if code != exitOK || out != "one shot" || errOut != "" {
			t.Errorf("dial = %d, stdout %q, stderr %q; want 0, the echo, nothing", code, out, errOut)
		}
	})
	t.Run("unknown service", func(t *testing.T) {
		setDialStdin(t, strings.NewReader(""))
		code, _, errOut := runCmd("dial", "nosuch", "--socket", tb.sock, "--timeout", "5s")
		if code != exitFailure || !strings.Contains(errOut, "portier dial:") {
			t.Errorf("dial nosuch = %d, stderr %q; want %d and an error", code, errOut, exitFailure)
		}
	})
	t.Run("no broker", func(t *testing.T) {
		setDialStdin(t, strings.NewReader(""))
		code, _, errOut := runCmd("dial", "--socket", filepath.Join(tb.dir, "none.sock"), "echo")
		if code != exitFailure || !strings.Contains(errOut, "portier dial:") {
			t.Errorf("dial without a broker = %d, stderr %q; want %d and an error", code, errOut, exitFailure)
		}
	})
}

// readLine reads one line, bounded by cliWait.
func readLine(r *bufio.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := r.ReadString('\n')
		ch <- result{s, err}
	}()
	select {
	case res := <-ch:
		return res.s, res.err
	case <-time.After(cliWait):
		return "", fmt.Errorf("no line within %s", cliWait)
	}
}

// TestBridgeHalfClose checks bridge on its own: stdin EOF half-closes the
// connection, and the bridge ends when the peer closes; a peer that closes
// while stdin is still open has cut the connection, and the bridge says so
// without waiting for stdin.
func TestBridgeHalfClose(t *testing.T) {
	checkCLILeaks(t)
	a, b := unixPair(t)
	peerDone := make(chan error, 1)
	go func() {
		// The peer reads the request to EOF, then answers and closes.
		req, err := io.ReadAll(b)
		if err == nil {
			_, err = b.Write(append([]byte("re: "), req...))
		}
		b.Close()
		peerDone <- err
	}()
	var out bytes.Buffer
	if err := bridge(a, strings.NewReader("question"), &out, defaultEOFWait); err != nil {
		t.Fatalf("bridge: %v", err)
	}
	if err := <-peerDone; err != nil {
		t.Fatal(err)
	}
	if out.String() != "re: question" {
		t.Errorf("bridge output %q, want %q", out.String(), "re: question")
	}

	// A peer that closes first ends the bridge while stdin stays open,
	// with an error: what stdin still had to say was never served.
	a, b = unixPair(t)
	stdinR, stdinW := io.Pipe()
	defer stdinW.Close()
	b.Close()
	if err := bridge(a, stdinR, io.Discard, defaultEOFWait); !errors.Is(err, errCut) {
		t.Fatalf("bridge with a peer that closed first: %v, want errCut", err)
	}

	// A peer that reads part of the request and resets the connection.
	a, b = unixPair(t)
	go func() {
		buf := make([]byte, 4)
		_, _ = io.ReadFull(b, buf)
		b.Close() // unread bytes: the reader sees a reset
	}()
	if err := bridge(a, strings.NewReader(strings.Repeat("request ", 1<<16)), io.Discard, defaultEOFWait); err == nil || !strings.Contains(err.Error(), "connection cut") {
		t.Fatalf("bridge with a peer that dropped the request: %v, want a cut", err)
	}
}

func unixPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// TestAdminCommands: status, metrics and services against a real broker
// that has served one connection.
func TestAdminCommands(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	setDialStdin(t, strings.NewReader("x"))
	if code, out, errOut := runCmd("dial", "echo", "--socket", tb.sock); code != exitOK || out != "x" {
		t.Fatalf("dial = %d, %q, %q", code, out, errOut)
	}

	code, out, errOut := runCmd("status", "--socket", tb.sock)
	if code != exitOK {
		t.Fatalf("status = %d: %s", code, errOut)
	}
	if !strings.Contains(out, "broker pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(out, "socket "+tb.sock) {
		t.Errorf("status header does not name this broker:\n%s", out)
	}
	if !hasRow(out, "echo", "1.0.0") || !strings.Contains(out, "SERVICE") {
		t.Errorf("status lacks the echo backend row:\n%s", out)
	}

	code, out, errOut = runCmd("metrics", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "portier_hellos_total") || !strings.Contains(out, "# HELP") {
		t.Errorf("metrics = %d, stderr %q, output lacks portier_hellos_total:\n%s", code, errOut, out)
	}

	for _, verb := range []string{"status", "metrics"} {
		code, _, errOut := runCmd(verb, "--socket", filepath.Join(tb.dir, "none.sock"))
		if code != exitFailure || !strings.Contains(errOut, "no broker on") {
			t.Errorf("%s without a broker = %d, stderr %q; want %d and 'no broker on'", verb, code, errOut, exitFailure)
		}
	}
}

// TestStatusNoBackends: a fresh broker reports no backends.
func TestStatusNoBackends(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	code, out, errOut := runCmd("status", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "no backends running") {
		t.Errorf("status = %d, stderr %q:\n%s", code, errOut, out)
	}
}

// hasRow reports whether a line of out starts with the given fields.
func hasRow(out string, fields ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestServicesCommand(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	svc := filepath.Join(dir, "svc")
	if err := os.Mkdir(svc, 0o700); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd("services", "--services", svc)
	if code != exitOK || !strings.Contains(out, "no service definitions in "+svc) {
		t.Errorf("services on an empty directory = %d:\n%s", code, out)
	}

	if err := os.WriteFile(filepath.Join(svc, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd("services", "--services", svc)
	if code != exitOK || !hasRow(out, "echo", "1.0.0") {
		t.Errorf("services = %d, stderr %q; want the echo row:\n%s", code, errOut, out)
	}

	if err := os.WriteFile(filepath.Join(svc, "broken.toml"), []byte("name = \"broken\"\nversion = \"one\"\ncommand = []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd("services", "--services", svc)
	if code != exitFailure {
		t.Errorf("services with an invalid definition = %d, want %d", code, exitFailure)
	}
	if !hasRow(out, "echo", "1.0.0") {
		t.Errorf("the valid definition is no longer listed:\n%s", out)
	}
	var invalid string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "invalid: ") {
			invalid = line
		}
	}
	if !strings.Contains(invalid, "broken.toml") {
		t.Errorf("no 'invalid:' line naming broken.toml:\n%s", out)
	}
}

// TestServeRefusals: serve refuses bad logging flags, and a second broker
// on a live socket exits with exitAlreadyRunning.
func TestServeRefusals(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	for _, args := range [][]string{
		{"serve", "--socket", tb.sock, "--log-format", "xml"},
		{"serve", "--socket", tb.sock, "--log-level", "loud"},
	} {
		if code, _, errOut := runCmd(args...); code != exitUsage || !strings.Contains(errOut, "portier serve:") {
			t.Errorf("%q = %d, stderr %q; want %d", args, code, errOut, exitUsage)
		}
	}
	code, _, errOut := runCmd("serve", "--socket", tb.sock, "--services", tb.svcDir, "--log-level", "error")
	if code != exitAlreadyRunning || !strings.Contains(errOut, "already running") {
		t.Errorf("second serve = %d, stderr %q; want %d", code, errOut, exitAlreadyRunning)
	}
}

// TestEchoBackendStandalone runs `portier __echo-backend --listen PATH` as a
// real process without a broker: it echoes, and SIGTERM stops it cleanly.
func TestEchoBackendStandalone(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	path := filepath.Join(dir, "echo.sock")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "__echo-backend", "--listen", path)
	cmd.Env = withoutBrokerEnv(os.Environ())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		<-waited
	}()

	// The process gives no signal that it listens: poll its socket, bounded.
	var c net.Conn
	deadline := time.Now().Add(cliWait)
	for {
		c, err = net.Dial("unix", path)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo backend not listening on %s: %v\n%s", path, err, stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(cliWait))
	if _, err := io.WriteString(c, "standalone"); err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "standalone" {
		t.Fatalf("echo: %q, %v", got, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		waited <- err // for the deferred cleanup
		if err != nil {
			t.Errorf("echo backend after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(cliWait):
		t.Fatal("echo backend did not exit on SIGTERM")
	}
	if _, err := os.Lstat(path); err == nil {
		t.Errorf("echo backend left its socket %s behind", path)
	}
}

// TestEchoBackendNowhereToListen: without a broker and --listen the echo
// backend explains itself and fails.
func TestEchoBackendNowhereToListen(t *testing.T) {
	checkCLILeaks(t)
	for _, k := range []string{"PORTIER_SERVICE", "PORTIER_VERSION", "PORTIER_BROKER", "PORTIER_BACKEND_ENDPOINT", "PORTIER_SPAWN_SECRET"} {
		t.Setenv(k, "")
	}
	code, _, errOut := runCmd("__echo-backend")
	if code != exitFailure || !strings.Contains(errOut, "echo backend:") || !strings.Contains(errOut, "Address") {
		t.Errorf("__echo-backend = %d, stderr %q; want %d and the reason", code, errOut, exitFailure)
	}
	if code, _, _ := runCmd("__echo-backend", "--bogus"); code != exitUsage {
		t.Errorf("__echo-backend --bogus = %d, want %d", code, exitUsage)
	}
}

// withoutBrokerEnv drops the PORTIER_* variables a test run might have.
func withoutBrokerEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "PORTIER_") {
			out = append(out, kv)
		}
	}
	return out
}

//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
)

// dialProc is `portier dial` running on a goroutine with its stdin and
// stdout as pipes the test drives.
type dialProc struct {
	in     *io.PipeWriter
	out    *bufio.Reader
	stderr *bytes.Buffer
	done   chan int
}

func startDial(t *testing.T, args ...string) *dialProc {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	setDialStdin(t, inR)
	d := &dialProc{in: inW, out: bufio.NewReader(outR), stderr: new(bytes.Buffer), done: make(chan int, 1)}
	go func() {
		code := dialCmd(args, outW, d.stderr)
		outW.Close()
		d.done <- code
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	return d
}

// line sends one line and checks it comes back.
func (d *dialProc) line(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(d.in, s+"\n"); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
	got, err := readLine(d.out)
	if err != nil || got != s+"\n" {
		t.Fatalf("echo of %q: %q, %v", s, got, err)
	}
}

func (d *dialProc) wait(t *testing.T) int {
	t.Helper()
	go func() { _, _ = io.Copy(io.Discard, d.out) }()
	select {
	case code := <-d.done:
		return code
	case <-time.After(cliWait):
		t.Fatal("portier dial did not return")
		return -1
	}
}

// statusOf runs `portier status --json`.
func statusOf(t *testing.T, sock string) statusJSON {
	t.Helper()
	code, out, errOut := runCmd("status", "--json", "--socket", sock)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status --json = %d, %v, %s", code, err, errOut)
	}
	return st
}

// pollFor polls cond, which asks another process, until it holds.
func pollFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(cliWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, cliWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDialExitsNonZeroWhenCut: a connection the backend drops while stdin
// is still open (here the backend is killed) makes `portier dial` fail,
// where it used to exit 0 as if all had gone well.
func TestDialExitsNonZeroWhenCut(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	d := startDial(t, "echo", "--socket", tb.sock)
	d.line(t, "before the cut")
	st := statusOf(t, tb.sock)
	if len(st.Backends) != 1 {
		t.Fatalf("backends = %+v", st.Backends)
	}
	if err := syscall.Kill(int(st.Backends[0].PID), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := d.wait(t); code != exitFailure || !strings.Contains(d.stderr.String(), "connection cut") {
		t.Fatalf("dial after its backend was killed = %d, stderr %q; want %d and \"connection cut\"", code, d.stderr, exitFailure)
	}
}

// TestDialLongConnectionPastIdleTimeout is the scenario through the
// CLI: `portier dial` to a backend with idle_timeout 1s, one line a second
// for longer than that. Every line comes back, dial exits 0, the same
// backend served throughout, and it is quiesced only after the connection
// closed.
func TestDialLongConnectionPastIdleTimeout(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	def := strings.Replace(echoDefinition(t), "idle_timeout = \"0\"", "idle_timeout = \"1s\"", 1)
	if err := os.WriteFile(filepath.Join(tb.svcDir, "echo.toml"), []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDial(t, "echo", "--socket", tb.sock)
	d.line(t, "line 1")
	pid := statusOf(t, tb.sock).Backends[0].PID
	for i := 2; i <= 4; i++ {
		time.Sleep(time.Second)
		d.line(t, "line "+strconv.Itoa(i))
	}
	if st := statusOf(t, tb.sock); len(st.Backends) != 1 || st.Backends[0].PID != pid || st.Backends[0].State != "registered" ||
		st.Backends[0].LiveConnections != 1 {
		t.Fatalf("backends during the connection: %+v; want pid %d registered with 1 live connection", st.Backends, pid)
	}
	d.in.Close()
	if code := d.wait(t); code != exitOK {
		t.Fatalf("dial = %d: %s", code, d.stderr)
	}
	pollFor(t, "quiesce of the idle backend", func() bool { return len(statusOf(t, tb.sock).Backends) == 0 })
}

// TestStopRestartCommands: restart starts a new backend while the old one
// finishes the connection it serves; stop retires them; both with --json.
func TestStopRestartCommands(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	held, err := client.Dial(ctx, "echo", client.Socket(tb.sock))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldR := bufio.NewReader(held)
	roundTrip := func(s string) {
		t.Helper()
		_ = held.SetDeadline(time.Now().Add(cliWait))
		if _, err := io.WriteString(held, s+"\n"); err != nil {
			t.Fatal(err)
		}
		if got, err := heldR.ReadString('\n'); err != nil || got != s+"\n" {
			t.Fatalf("echo of %q: %q, %v", s, got, err)
		}
	}
	roundTrip("first")
	oldPID := statusOf(t, tb.sock).Backends[0].PID

	code, out, errOut := runCmd("restart", "echo", "--socket", tb.sock)
	m := regexp.MustCompile(`echo: started pid (\d+) \(1\.0\.0\)`).FindStringSubmatch(out)
	if code != exitOK || m == nil || !strings.Contains(out, fmt.Sprintf("asked pid %d", oldPID)) {
		t.Fatalf("restart = %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	roundTrip("the old backend still serves its connection")
	newPID, _ := strconv.Atoi(m[1])
	st := statusOf(t, tb.sock)
	states := map[uint32]string{}
	for _, b := range st.Backends {
		states[b.PID] = b.State
	}
	if states[oldPID] != "quiescing" || states[uint32(newPID)] != "registered" {
		t.Fatalf("after restart: %+v, want %d quiescing and %d registered", st.Backends, oldPID, newPID)
	}

	code, out, _ = runCmd("stop", "echo", "--json", "--socket", tb.sock)
	checkShape(t, "stop", out, []string{"error", "error_code", "log", "service",
		"started", "started.endpoint", "started.handoff_capable", "started.live_connections", "started.pid", "started.routed_connections",
		"started.service", "started.state", "started.uptime_ms", "started.version",
		"stopped", "stopped[].endpoint", "stopped[].handoff_capable", "stopped[].live_connections", "stopped[].pid",
		"stopped[].routed_connections", "stopped[].service", "stopped[].state", "stopped[].uptime_ms", "stopped[].version"})
	var aj actionJSON
	if err := json.Unmarshal([]byte(out), &aj); code != exitOK || err != nil || len(aj.Stopped) != 1 || aj.Stopped[0].PID != uint32(newPID) {
		t.Fatalf("stop --json = %d, %v: %s", code, err, out)
	}
	roundTrip("still served while draining")
	held.Close()
	pollFor(t, "both backends to exit", func() bool { return len(statusOf(t, tb.sock).Backends) == 0 })
	if code, out, _ := runCmd("stop", "echo", "--socket", tb.sock); code != exitOK || !strings.Contains(out, "no backend was running") {
		t.Errorf("stop with nothing running = %d, %q", code, out)
	}

	code, out, _ = runCmd("restart", "echo", "--json", "--socket", tb.sock)
	if err := json.Unmarshal([]byte(out), &aj); code != exitOK || err != nil || aj.Started.PID == 0 || aj.Error != "" {
		t.Fatalf("restart --json with nothing running = %d, %v: %s", code, err, out)
	}
	if code, _, errOut := runCmd("restart", "Echo", "--socket", tb.sock); code != exitUsage || !strings.Contains(errOut, "not a service name") {
		t.Errorf("restart of an invalid name = %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("stop", "--socket", tb.sock); code != exitUsage || !strings.Contains(errOut, "Usage: portier stop SERVICE") {
		t.Errorf("stop without a service = %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("stop", "echo", "extra", "--socket", tb.sock); code != exitUsage || !strings.Contains(errOut, `unexpected argument "extra"`) {
		t.Errorf("stop with a stray argument = %d, %q", code, errOut)
	}
}

// failingDefinition is a service whose backend prints to stdout and
// stderr and exits 3 before registering.
const failingDefinition = "name = \"broken\"\nversion = \"2.0.0\"\n" +
	"command = [\"/bin/sh\", \"-c\", \"echo 'hello from the backend'; echo 'fatal: no database' >&2; exit 3\"]\n"

// TestFailingServiceDiagnosis: a service that fails to start shows in
// `portier status` (text and --json) with its last error and log, `portier
// restart` says why it did not start, and `portier logs` prints its output
// (all of it, the last lines, and with -f what is written next, until
// interrupted).
func TestFailingServiceDiagnosis(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	if err := os.WriteFile(filepath.Join(tb.svcDir, "broken.toml"), []byte(failingDefinition), 0o600); err != nil {
		t.Fatal(err)
	}
	setDialStdin(t, strings.NewReader(""))
	code, _, errOut := runCmd("dial", "broken", "--socket", tb.sock)
	if code != exitFailure || !strings.Contains(errOut, "fatal: no database") || !strings.Contains(errOut, "broken-2.0.0.log") {
		t.Fatalf("dial broken = %d, %q; want the refusal naming the log and quoting the output", code, errOut)
	}

	// The refusal can reach the client a moment before the broker has
	// reaped the process that failed.
	pollFor(t, "the failed backend to leave status", func() bool { return len(statusOf(t, tb.sock).Backends) == 0 })
	code, out, _ := runCmd("status", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "not starting:") || !strings.Contains(out, "broken@2.0.0 failing (failed starts: 1,") ||
		!strings.Contains(out, "fatal: no database") || !strings.Contains(out, "portier logs broken") {
		t.Errorf("status does not show the failing service:\n%s", out)
	}
	code, out, _ = runCmd("status", "--json", "--socket", tb.sock)
	if code != exitOK {
		t.Fatalf("status --json = %d", code)
	}
	checkShape(t, "status", out, []string{"backends", "broker_pid", "connections", "error",
		"failures", "failures[].code", "failures[].error", "failures[].failures", "failures[].log", "failures[].retry_after_ms",
		"failures[].service", "failures[].since_ms", "failures[].state", "failures[].version",
		"fallbacks", "handles_leaked", "handles_reclaimed", "handoffs", "running", "services_dir", "socket", "state_dir", "uptime_ms"})
	st := statusOf(t, tb.sock)
	if len(st.Failures) != 1 || st.Failures[0].Service != "broken" || st.Failures[0].State != "failing" ||
		st.Failures[0].Code != "ERROR_BACKEND_SPAWN_FAILED" || !strings.HasSuffix(st.Failures[0].Log, "broken-2.0.0.log") {
		t.Errorf("status --json failures = %+v", st.Failures)
	}
	logPath := st.Failures[0].Log

	code, _, errOut = runCmd("restart", "broken", "--socket", tb.sock)
	if code != exitFailure || !strings.Contains(errOut, "did not start") || !strings.Contains(errOut, logPath) {
		t.Errorf("restart broken = %d, %q; want 1 and the reason naming the log", code, errOut)
	}

	code, out, errOut = runCmd("logs", "broken", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "hello from the backend\n") || !strings.Contains(out, "fatal: no database\n") ||
		!strings.Contains(errOut, logPath) {
		t.Errorf("logs broken = %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if code, out, _ := runCmd("logs", "broken", "-n", "1", "--socket", tb.sock); code != exitOK || out != "fatal: no database\n" {
		t.Errorf("logs -n 1 = %d, %q", code, out)
	}
	if code, _, errOut := runCmd("logs", "nosuch", "--socket", tb.sock); code != exitFailure || !strings.Contains(errOut, "nosuch") {
		t.Errorf("logs of an unknown service = %d, %q", code, errOut)
	}
	if code, _, errOut := runCmd("logs", "broken", "--version", "1.9.9", "--socket", tb.sock); code != exitFailure || !strings.Contains(errOut, "no output yet") {
		t.Errorf("logs of a version that never ran = %d, %q", code, errOut)
	}

	// -f: what is written next, until interrupted.
	ctx, cancel := context.WithCancel(context.Background())
	old := logsContext
	logsContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { logsContext = old })
	var fout syncWriter
	done := make(chan int, 1)
	go func() {
		done <- logsCmd([]string{"broken", "-f", "-n", "1", "--poll", "10ms", "--socket", tb.sock}, &fout, io.Discard)
	}()
	pollFor(t, "the last line before following", func() bool { return fout.String() == "fatal: no database\n" })
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "written while following")
	f.Close()
	pollFor(t, "the followed line", func() bool { return fout.String() == "fatal: no database\nwritten while following\n" })
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("logs -f after an interrupt = %d", code)
		}
	case <-time.After(cliWait):
		t.Fatal("logs -f did not end when interrupted")
	}
}

// syncWriter is a buffer written by one goroutine and read by another.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestServeSIGHUPReloads: SIGHUP makes `portier serve` re-check its
// backends against the definitions instead of ending it.
func TestServeSIGHUPReloads(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	sock, svc := filepath.Join(dir, "run", "broker.sock"), filepath.Join(dir, "svc")
	if err := os.Mkdir(svc, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(svc, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	cleanupBackendsOf(t, sock)
	p := startPortier(t, nil, exe, "serve", "--socket", sock, "--services", svc)
	p.waitLine(t, regexp.MustCompile(`msg="broker listening"`))
	setDialStdin(t, strings.NewReader("x"))
	if code, out, errOut := runCmd("dial", "echo", "--socket", sock); code != exitOK || out != "x" {
		t.Fatalf("dial = %d, %q, %q", code, out, errOut)
	}
	// The definition now runs the backend elsewhere: SIGHUP retires the
	// running one at once.
	def := echoDefinition(t) + "dir = \"/\"\n"
	if err := os.WriteFile(filepath.Join(svc, "echo.toml"), []byte(def), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// (The janitor may have retired it a moment before.)
	p.waitLine(t, regexp.MustCompile(`msg="definitions re-checked"`))
	pollFor(t, "the retired backend to exit", func() bool { return len(statusOf(t, sock).Backends) == 0 })
	setDialStdin(t, strings.NewReader("x"))
	if code, out, errOut := runCmd("dial", "echo", "--socket", sock); code != exitOK || out != "x" {
		t.Fatalf("dial after SIGHUP = %d, %q, %q", code, out, errOut)
	}
	pids := backendPIDs(t, sock)
	if err := p.stop(t); err != nil {
		t.Errorf("serve after SIGHUP and SIGTERM: %v", err)
	}
	stopOrphans(t, pids)
}

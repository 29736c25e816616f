package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portier/portier/broker"
)

// cliWait bounds every wait of these tests; it detects hangs and never
// measures speed.
const cliWait = 20 * time.Second

var pipeSeq atomic.Int64

// testPipe is a broker pipe of this test process's own.
func testPipe() string {
	return fmt.Sprintf(`\\.\pipe\portier-cli-test-%d-%d`, os.Getpid(), pipeSeq.Add(1))
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

// testBroker is an in-process broker on a pipe of its own, with the echo
// service defined.
type testBroker struct {
	dir, sock, svcDir string
}

func startTestBroker(t *testing.T) *testBroker {
	t.Helper()
	dir := t.TempDir()
	tb := &testBroker{dir: dir, sock: testPipe(), svcDir: filepath.Join(dir, "svc")}
	if err := os.Mkdir(tb.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tb.svcDir, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{Socket: tb.sock, ServicesDir: tb.svcDir, StateDir: filepath.Join(dir, "state"), StopBackendsOnExit: true,
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

// TestAdminCommandsWindows: status, metrics and doctor against a real
// broker on a named pipe.
func TestAdminCommandsWindows(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)

	code, out, errOut := runCmd("status", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "broker pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(out, "socket "+tb.sock) ||
		!strings.Contains(out, "no backends running") {
		t.Errorf("status = %d, stderr %q:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd("status", "--json", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, `"handles_leaked": 0`) || !strings.Contains(out, `"state_dir": `+strconv.Quote(filepath.Join(tb.dir, "state"))) {
		t.Errorf("status --json = %d, stderr %q:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd("metrics", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "# HELP portier_handoff_handles_leaked_total") || !strings.Contains(out, "portier_handoff_handles_reclaimed_total 0") {
		t.Errorf("metrics = %d, stderr %q, output lacks the handle counters:\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd("doctor", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "ok       pipe "+tb.sock+" (from --socket)") ||
		!strings.Contains(out, "answers on "+tb.sock) || !strings.Contains(out, "service echo@1.0.0") {
		t.Errorf("doctor = %d, stderr %q:\n%s", code, errOut, out)
	}

	none := testPipe()
	for _, verb := range []string{"status", "metrics"} {
		code, _, errOut := runCmd(verb, "--socket", none)
		if code != exitFailure || !strings.Contains(errOut, "no broker on") || !strings.Contains(errOut, "portier serve") {
			t.Errorf("%s without a broker = %d, stderr %q; want %d and 'no broker on', naming portier serve", verb, code, errOut, exitFailure)
		}
	}
}

// TestServeWindows: `portier serve` serves the pipe it is given, and a
// second one on the same pipe says a broker is already running (exit 3).
func TestServeWindows(t *testing.T) {
	dir := t.TempDir()
	sock := testPipe()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	serve := exec.Command(exe, "serve", "--socket", sock, "--services", dir)
	serve.Stderr = &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- serve.Wait() }()
	defer func() {
		// No backend was started, so killing the broker leaves nothing.
		_ = serve.Process.Kill()
		<-exited
	}()
	deadline := time.Now().Add(cliWait)
	for {
		code, out, _ := runCmd("status", "--socket", sock)
		if code == exitOK {
			if !strings.Contains(out, "pid "+strconv.Itoa(serve.Process.Pid)) {
				t.Fatalf("status names another broker:\n%s", out)
			}
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("portier serve exited: %v\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("portier serve did not answer on %s:\n%s", sock, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, _, errOut := runCmd("serve", "--socket", sock, "--services", dir)
	if code != exitAlreadyRunning || !strings.Contains(errOut, "already running on "+sock) {
		t.Fatalf("second serve = %d, stderr %q; want %d", code, errOut, exitAlreadyRunning)
	}
}

//go:build unix

package client

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
)

// waitBrokerExit installs the reaping hook and returns a channel that gets
// the started broker's exit error.
func waitBrokerExit(t *testing.T) <-chan error {
	exited := make(chan error, 1)
	testHookBrokerExited = func(err error) { exited <- err }
	t.Cleanup(func() { testHookBrokerExited = nil })
	return exited
}

func recvExit(t *testing.T, exited <-chan error) error {
	t.Helper()
	select {
	case err := <-exited:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the started broker did not exit")
		return nil
	}
}

func testExecutable(t *testing.T) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestAutoStart: no broker; Dial starts the test binary as a fake `portier
// serve`, which binds the socket and answers the Hello.
func TestAutoStart(t *testing.T) {
	for _, how := range []string{"option", "PORTIER_BIN"} {
		t.Run(how, func(t *testing.T) {
			fdcount.Check(t)
			dir := shortDir(t)
			rec := startRecorder(t, dir, "backend.sock")
			sock := filepath.Join(dir, "broker.sock")
			t.Setenv(helperEnv, "broker")
			t.Setenv(helperPipeEnv, rec.path)
			cfg := AutoStartConfig{Timeout: 30 * time.Second}
			if how == "option" {
				cfg.Binary = testExecutable(t)
				t.Setenv("PORTIER_BIN", "/nonexistent/portier")
			} else {
				t.Setenv("PORTIER_BIN", testExecutable(t))
			}
			exited := waitBrokerExit(t)
			c, err := Dial(t.Context(), "echo", Socket(sock), AutoStart(cfg), EarlyData([]byte("REQ1")))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.Route() != Reconnect || c.DaemonVersion() != "9.9.9" {
				t.Fatalf("route %v version %q", c.Route(), c.DaemonVersion())
			}
			if got := readString(t, c, 2); got != "B>" {
				t.Fatalf("got %q", got)
			}
			_ = c.Close()
			if r := rec.next(t); r.data != "REQ1" {
				t.Fatalf("backend got %q", r.data)
			}
			if err := recvExit(t, exited); err != nil {
				t.Fatalf("fake broker: %v", err)
			}
		})
	}
}

// TestAutoStartNeverBinds: the started program exits without binding; Dial
// gives up after the configured time with ErrBrokerUnavailable.
func TestAutoStartNeverBinds(t *testing.T) {
	fdcount.Check(t)
	dir := shortDir(t)
	t.Setenv(helperEnv, "nobind")
	exited := waitBrokerExit(t)
	_, err := Dial(t.Context(), "echo", Socket(filepath.Join(dir, "broker.sock")),
		AutoStart(AutoStartConfig{Binary: testExecutable(t), Timeout: 100 * time.Millisecond}))
	if !errors.Is(err, ErrBrokerUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
	if err := recvExit(t, exited); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

// TestAutoStartFailureNamesLog: the started broker fails at once. Dial
// gives up without waiting out the timeout, and its error names the log
// file in the socket's directory and quotes the broker's last words, which
// the log holds after the client's own line saying what it started.
func TestAutoStartFailureNamesLog(t *testing.T) {
	fdcount.Check(t)
	dir := shortDir(t)
	sock := filepath.Join(dir, "run", "broker.sock")
	t.Setenv(helperEnv, "fail")
	exited := waitBrokerExit(t)
	_, err := Dial(t.Context(), "echo", Socket(sock),
		AutoStart(AutoStartConfig{Binary: testExecutable(t), Timeout: time.Minute}))
	if err == nil {
		t.Fatal("Dial succeeded without a broker")
	}
	logPath := filepath.Join(dir, "run", "broker.log")
	// "failed before serving", not "was not served within 1m0s": Dial
	// stopped waiting when the broker exited.
	for _, want := range []string{"failed before serving", "its log is " + logPath, "state directory: permission denied", "it exited: exit status 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if !errors.Is(err, ErrBrokerUnavailable) {
		t.Errorf("error is not ErrBrokerUnavailable: %v", err)
	}
	if err := recvExit(t, exited); err == nil {
		t.Error("the failing helper exited 0")
	}
	log, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "starting "+testExecutable(t)+" serve --socket "+sock+" --log-file "+logPath) {
		t.Errorf("log:\n%s", log)
	}
	if fi, err := os.Stat(filepath.Dir(logPath)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory: %v, %v; want it created 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(logPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("log file: %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestAutoStartUnsafeDirectory: a socket directory others can enter is
// refused before anything starts, with the fix in the error.
func TestAutoStartUnsafeDirectory(t *testing.T) {
	fdcount.Check(t)
	dir := shortDir(t)
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(t.Context(), "echo", Socket(filepath.Join(open, "broker.sock")),
		AutoStart(AutoStartConfig{Binary: filepath.Join(dir, "never-run")}))
	if !errors.Is(err, ErrBrokerUnavailable) || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Fatalf("got %v", err)
	}
}

func TestAutoStartNoBinary(t *testing.T) {
	fdcount.Check(t)
	dir := shortDir(t)
	_, err := Dial(t.Context(), "echo", Socket(filepath.Join(dir, "broker.sock")),
		AutoStart(AutoStartConfig{Binary: filepath.Join(dir, "no-such-portier")}))
	if !errors.Is(err, ErrBrokerUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestResolveBinary(t *testing.T) {
	t.Setenv("PORTIER_BIN", "/opt/portier/bin/portier")
	if b, _ := resolveBinary(&AutoStartConfig{Binary: "/x/portier"}); b != "/x/portier" {
		t.Errorf("option: %q", b)
	}
	if b, _ := resolveBinary(&AutoStartConfig{}); b != "/opt/portier/bin/portier" {
		t.Errorf("PORTIER_BIN: %q", b)
	}
	t.Setenv("PORTIER_BIN", "")
	t.Setenv("PATH", t.TempDir())
	if _, err := resolveBinary(&AutoStartConfig{}); err == nil {
		t.Error("found a portier binary on an empty PATH")
	}
}

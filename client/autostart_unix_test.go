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

// TestAutoStartFailureNamesLog: the started broker fails at once. Dial
// gives up without waiting out the timeout, and its error names the log
// file in the socket's directory and quotes the broker's last words, which
// the log holds after the client's own line saying what it started.
func TestAutoStartFailureNamesLog(t *testing.T) {
	fdcount.Check(t)
	dir := newDir(t)
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
	dir := newDir(t)
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

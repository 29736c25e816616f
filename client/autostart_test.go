package client

import (
	"errors"
	"os"
	"path/filepath"
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
			isolateBrokerLog(t)
			dir := newDir(t)
			rec := startRecorder(t, dir, "backend")
			sock := endpointIn(dir, "broker")
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
	isolateBrokerLog(t)
	dir := newDir(t)
	t.Setenv(helperEnv, "nobind")
	exited := waitBrokerExit(t)
	_, err := Dial(t.Context(), "echo", Socket(endpointIn(dir, "broker")),
		AutoStart(AutoStartConfig{Binary: testExecutable(t), Timeout: 100 * time.Millisecond}))
	if !errors.Is(err, ErrBrokerUnavailable) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
	if err := recvExit(t, exited); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func TestAutoStartNoBinary(t *testing.T) {
	fdcount.Check(t)
	dir := newDir(t)
	_, err := Dial(t.Context(), "echo", Socket(endpointIn(dir, "broker")),
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

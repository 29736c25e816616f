package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as the portier command, so that the
// bench, the demo and test brokers can start their children (broker,
// backends, proxy, clients) from os.Executable(). The name avoids the
// PORTIER_ prefix, which the broker strips from a backend's environment.
const helperEnv = "CMD_PORTIER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Setenv(helperEnv, "1")
	if os.Getenv("GORACE") == "" {
		// A race-enabled binary sleeps a second at exit by default; the
		// tests start dozens of them.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m, leakOptions...)
}

func TestRunDispatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		stderrHas []string
	}{
		{"no arguments", nil, exitUsage, []string{"Usage: portier <command>"}},
		{"-h", []string{"-h"}, exitOK, []string{"Usage: portier <command>"}},
		{"--help", []string{"--help"}, exitOK, []string{"Usage: portier <command>"}},
		{"help", []string{"help"}, exitOK, []string{"Usage: portier <command>"}},
		{"unknown command", []string{"frobnicate"}, exitUsage, []string{`unknown command "frobnicate"`, "Usage: portier <command>"}},
		{"command -h", []string{"dial", "-h"}, exitOK, []string{"Usage: portier dial SERVICE"}},
		{"bad flag", []string{"status", "--no-such-flag"}, exitUsage, []string{"flag provided but not defined"}},
		{"dial without a service", []string{"dial"}, exitUsage, []string{"Usage: portier dial SERVICE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("run(%q) = %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr.String())
			}
			for _, s := range tc.stderrHas {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("run(%q): stderr lacks %q:\n%s", tc.args, s, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("run(%q) wrote to stdout: %q", tc.args, stdout.String())
			}
		})
	}
}

// TestUsageListsCommands: usage names every visible command, sorted, and
// hides the internal ones.
func TestUsageListsCommands(t *testing.T) {
	var b bytes.Buffer
	usage(&b)
	out := b.String()
	last := -1
	for _, name := range []string{"demo", "dial", "doctor", "metrics", "serve", "services", "status"} {
		i := strings.Index(out, "\n  "+name+" ")
		if i < 0 {
			t.Errorf("usage does not list %q:\n%s", name, out)
			continue
		}
		if i < last {
			t.Errorf("usage lists %q out of order:\n%s", name, out)
		}
		last = i
	}
	for _, c := range commands {
		if c.hidden && strings.Contains(out, c.name) {
			t.Errorf("usage lists the hidden command %q", c.name)
		}
		if !c.hidden && c.summary == "" {
			t.Errorf("command %q has no summary", c.name)
		}
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	for _, format := range []string{"text", "JSON"} {
		l, err := newLogger(&b, format, "warn")
		if err != nil {
			t.Fatalf("newLogger(%s): %v", format, err)
		}
		b.Reset()
		l.Info("hidden")
		l.Warn("shown")
		if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), "shown") {
			t.Errorf("%s logger at warn wrote %q", format, b.String())
		}
	}
	if !strings.HasPrefix(b.String(), "{") {
		t.Errorf("json logger wrote %q", b.String())
	}
	if _, err := newLogger(&b, "xml", "info"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("newLogger(xml) = %v, want a --log-format error", err)
	}
	if _, err := newLogger(&b, "text", "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("newLogger(level loud) = %v, want a --log-level error", err)
	}
}

func TestDefaultPaths(t *testing.T) {
	t.Setenv("PORTIER_SOCKET", "/somewhere/broker.sock")
	if got := defaultSocket(); got != "/somewhere/broker.sock" {
		t.Errorf("defaultSocket() = %q, want $PORTIER_SOCKET", got)
	}
	t.Setenv("PORTIER_SOCKET", "")
	if got := defaultSocket(); got == "" || got == "/somewhere/broker.sock" {
		t.Errorf("defaultSocket() without PORTIER_SOCKET = %q, want the per-user default", got)
	}
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	if got, want := defaultServicesDir(), filepath.Join(cfg, "portier", "services"); got != want {
		t.Errorf("defaultServicesDir() = %q, want %q", got, want)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	if got := defaultServicesDir(); !strings.HasSuffix(got, filepath.Join(".config", "portier", "services")) {
		t.Errorf("defaultServicesDir() without XDG_CONFIG_HOME = %q", got)
	}
}

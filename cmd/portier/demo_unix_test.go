//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's first command end to end with a few
// connections per route: an embedded broker, the echo backend as a real
// process (this test binary, re-executed as `portier __echo-backend`), and
// every route served the way its row says. Everything it started is stopped
// and everything it wrote is removed.
func TestDemo(t *testing.T) {
	checkCLILeaks(t)
	before := demoDirs(t)
	var stdout, stderr bytes.Buffer
	if code := demoCmd([]string{"--conns", "5"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("demo exited %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"portier demo: broker on ", "first connection started the backend and was served by handoff"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	for _, row := range [][]string{
		{"handoff", "5", "handoff×5"},
		{"reconnect", "5", "reconnect×5"},
		{"direct", "5", "direct×5"},
	} {
		if !hasRowFields(out, row[0], row[1], row[2]) {
			t.Errorf("demo output lacks a %s row of %s connections all served by %s:\n%s", row[0], row[1], row[2], out)
		}
	}
	if s := stderr.String(); s != "" {
		t.Errorf("demo wrote to stderr without -v:\n%s", s)
	}
	if after := demoDirs(t); len(after) != len(before) {
		t.Errorf("demo left its directory behind: %v", after)
	}
}

// hasRowFields reports whether a line of out has the name in its first
// field, count in its second and served in its last.
func hasRowFields(out, name, count, served string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[0] == name && f[1] == count && f[len(f)-1] == served {
			return true
		}
	}
	return false
}

func demoDirs(t *testing.T) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(os.TempDir(), "portier-demo-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDemoFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := demoCmd([]string{"--conns", "0"}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "--conns") {
		t.Errorf("demo --conns 0 = %d, stderr %q; want %d", code, stderr.String(), exitFailure)
	}
	if code := demoCmd([]string{"--nope"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("demo --nope = %d, want %d", code, exitUsage)
	}
}

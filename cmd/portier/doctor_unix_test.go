//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDoctor(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	code, out, errOut := runCmd("doctor", "--socket", tb.sock, "--services", tb.svcDir)
	if code != exitOK {
		t.Fatalf("doctor on a healthy setup = %d, stderr %q:\n%s", code, errOut, out)
	}
	for _, want := range []string{"socket directory " + filepath.Dir(tb.sock) + " is private", "answers on " + tb.sock, "service echo@1.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}

	// A broken definition and a command that is not executable are
	// problems, each with a fix.
	if err := os.WriteFile(filepath.Join(tb.svcDir, "broken.toml"), []byte("name = \"broken\"\nversion = \"one\"\ncommand = [\"/x\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tb.svcDir, "gone.toml"), []byte("name = \"gone\"\nversion = \"1.0.0\"\ncommand = [\"/nonexistent/gone\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd("doctor", "--socket", tb.sock, "--services", tb.svcDir)
	if code != exitFailure {
		t.Fatalf("doctor with problems = %d, want %d:\n%s", code, exitFailure, out)
	}
	if !strings.Contains(out, "broken.toml:2:") || !strings.Contains(out, "command /nonexistent/gone is not an executable file") ||
		strings.Count(out, "fix:") != 2 || !strings.Contains(out, "2 problem(s) found") {
		t.Errorf("doctor output:\n%s", out)
	}

	// A socket directory others can read is a problem.
	dir := cliTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCmd("doctor", "--socket", filepath.Join(dir, "broker.sock"), "--services", filepath.Join(dir, "none"))
	if code != exitFailure || !strings.Contains(out, "is not private") || !strings.Contains(out, "no broker answers") {
		t.Errorf("doctor with an open socket directory = %d:\n%s", code, out)
	}
}

// A refused services directory gets the fix for its actual problem: a
// symlinked directory is not repaired by chmod.
func TestDoctorSymlinkedServicesDir(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	real := filepath.Join(dir, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "services")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCmd("doctor", "--socket", filepath.Join(dir, "broker.sock"), "--services", link)
	if code != exitFailure {
		t.Fatalf("doctor with a symlinked services directory = %d, want %d:\n%s", code, exitFailure, out)
	}
	i := strings.Index(out, "PROBLEM  services directory "+link)
	if i < 0 {
		t.Fatalf("no problem reported for the services directory:\n%s", out)
	}
	_, fix, _ := strings.Cut(out[i:], "fix: ")
	fix, _, _ = strings.Cut(fix, "\n")
	if strings.Contains(fix, "chmod") || !strings.Contains(fix, "real directory "+real) || !strings.Contains(out, "is a symbolic link") {
		t.Errorf("fix for a symlinked services directory: %q\n%s", fix, out)
	}
}

// A program in a directory others can write is flagged, with the chmod
// that fixes it; the broker refuses to start it until then.
func TestDoctorUnsafeExecutable(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	svc := filepath.Join(dir, "services")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{svc, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(bin, "backend")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(svc, "svc.toml"), []byte("name = \"svc\"\nversion = \"1.0.0\"\ncommand = [\""+exe+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	doctor := func() (int, string) {
		code, out, _ := runCmd("doctor", "--socket", filepath.Join(dir, "broker.sock"), "--services", svc)
		return code, out
	}
	if _, out := doctor(); !strings.Contains(out, "ok       service svc@1.0.0") {
		t.Fatalf("safe program not ok:\n%s", out)
	}
	for path, want := range map[string]string{bin: "fix: chmod go-w " + bin, exe: "fix: chmod go-w " + exe} {
		if err := os.Chmod(path, 0o777); err != nil {
			t.Fatal(err)
		}
		code, out := doctor()
		if code != exitFailure || !strings.Contains(out, "PROBLEM  service svc: the broker will not start") ||
			!strings.Contains(out, want) || !strings.Contains(out, "mode 0777") {
			t.Errorf("doctor with %s mode 0777 = %d:\n%s", path, code, out)
		}
		if err := os.Chmod(path, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

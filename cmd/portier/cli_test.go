package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
)

// runCmd runs the portier command line args and returns its exit code and
// output.
func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// visibleCommands are the commands a user sees in the usage.
func visibleCommands() []command {
	var out []command
	for _, c := range commands {
		if !c.hidden {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// TestCommandHelp: every command's -h opens with a sentence saying what it
// does, shows a usage line and an example of the command itself, exits 0,
// and writes only to stderr.
func TestCommandHelp(t *testing.T) {
	for _, c := range visibleCommands() {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runCmd(c.name, "-h")
			if code != exitOK || out != "" {
				t.Fatalf("%s -h = %d, stdout %q", c.name, code, out)
			}
			para, _, _ := strings.Cut(errOut, "\n\n")
			if para == "" || strings.ToUpper(para[:1]) != para[:1] || !strings.Contains(para, ".") || strings.HasPrefix(para, "Usage") {
				t.Errorf("%s -h does not open with a sentence of what it does:\n%s", c.name, errOut)
			}
			if !strings.Contains(errOut, "\nUsage: portier "+c.name+" ") {
				t.Errorf("%s -h has no usage line:\n%s", c.name, errOut)
			}
			if !strings.Contains(errOut, "\nExample:\n  ") || !strings.Contains(errOut[strings.Index(errOut, "Example:"):], "portier "+c.name) {
				t.Errorf("%s -h has no example of itself:\n%s", c.name, errOut)
			}
		})
	}
}

// TestStrayArguments: an argument a command does not take is a usage error
// (exit 2) naming it, for every command, and nothing runs. The other flags
// are chosen so that a command that ignored the argument would still end
// at once (with another message) instead of serving or measuring.
func TestStrayArguments(t *testing.T) {
	noSocket := filepath.Join(t.TempDir(), "missing", "portier-test.sock")
	for _, c := range visibleCommands() {
		t.Run(c.name, func(t *testing.T) {
			args := []string{c.name, "--socket", noSocket, "stray-argument"}
			switch c.name {
			case "dial":
				args = []string{"dial", "echo", "--socket", noSocket, "--timeout", "1s", "stray-argument"}
			case "stop", "restart", "logs":
				args = []string{c.name, "echo", "--socket", noSocket, "stray-argument"}
			case "serve":
				args = []string{"serve", "--socket", noSocket, "--log-level", "loud", "stray-argument"}
			case "demo":
				args = []string{"demo", "-conns", "0", "stray-argument"}
			case "bench":
				args = []string{"bench", "--json", "--markdown", "stray-argument"}
			case "install":
				args = []string{"install", "--dry-run", "--binary", filepath.Join(t.TempDir(), "none"), "stray-argument"}
			case "version":
				args = []string{"version", "stray-argument"}
			}
			code, out, errOut := runCmd(args...)
			if code != exitUsage || !strings.Contains(errOut, `unexpected argument "stray-argument"`) {
				t.Errorf("%q = %d, stderr %q; want %d and the argument named", args, code, errOut, exitUsage)
			}
			if out != "" {
				t.Errorf("%q wrote to stdout: %q", args, out)
			}
		})
	}
	// Flags after the service name stay allowed, a second name does not.
	if code, _, errOut := runCmd("dial", "--socket", "/nonexistent/x.sock", "echo", "other"); code != exitUsage || !strings.Contains(errOut, `unexpected argument "other"`) {
		t.Errorf("dial with two services = %d, %q", code, errOut)
	}
}

// TestVersion: `portier version`, `portier --version` and the JSON form
// agree, and name the module, its version and the Go toolchain.
func TestVersion(t *testing.T) {
	code, out, errOut := runCmd("version")
	if code != exitOK || errOut != "" {
		t.Fatalf("version = %d, %q", code, errOut)
	}
	if code, out2, _ := runCmd("--version"); code != exitOK || out2 != out {
		t.Errorf("--version = %d, %q; want the same as version: %q", code, out2, out)
	}
	if !strings.HasPrefix(out, "portier ") || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("version output:\n%s", out)
	}
	code, out, _ = runCmd("version", "--json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); code != exitOK || err != nil {
		t.Fatalf("version --json = %d, %v:\n%s", code, err, out)
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok || v.Module != bi.Main.Path || v.Version != bi.Main.Version || v.Go != bi.GoVersion {
		t.Errorf("version --json = %+v; build info says %s %s %s", v, bi.Main.Path, bi.Main.Version, bi.GoVersion)
	}
}

// TestVersionFromBuildInfo: the VCS settings the go command records become
// the revision line.
func TestVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/portier/portier", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}, {Key: "vcs.modified", Value: "true"}}}
	v := versionFrom(bi, true)
	if v.Version != "v1.2.3" || v.Revision != "0123abcd" || v.RevisionTime != "2026-01-02T03:04:05Z" || !v.Modified || v.Go != "go1.26.0" {
		t.Errorf("versionFrom = %+v", v)
	}
	if got := v.text(); !strings.HasPrefix(got, "portier v1.2.3 (github.com/portier/portier)\nrevision 0123abcd from 2026-01-02T03:04:05Z, with uncommitted changes\ngo1.26.0 ") {
		t.Errorf("text:\n%s", got)
	}
	if got := versionFrom(nil, false).text(); !strings.Contains(got, "revision unknown") {
		t.Errorf("without build info:\n%s", got)
	}
}

// TestMetricsAddr: the metrics endpoint stays on loopback unless asked.
func TestMetricsAddr(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9464": true, "[::1]:9464": true, "localhost:0": true, "127.1.2.3:80": true,
		":9464": false, "0.0.0.0:9464": false, "192.168.1.2:9464": false, "[::]:9464": false, "example.com:80": false, "9464": false,
	} {
		err := checkMetricsAddr(addr, false)
		if (err == nil) != ok {
			t.Errorf("checkMetricsAddr(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
	if err := checkMetricsAddr("0.0.0.0:9464", true); err != nil {
		t.Errorf("with --metrics-allow-remote: %v", err)
	}
	if err := checkMetricsAddr("9464", true); err == nil {
		t.Error("a port without a host was accepted")
	}
}

// TestCappedLog: the broker's log file never grows past its cap; the newest
// half of a full log moves to FILE.1, and writers that opened the file on
// their own (the broker's stderr) keep writing to the live file.
func TestCappedLog(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/broker.log"
	other, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l, err := openCappedLog(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 30 {
		line := strings.Repeat(string(rune('a'+i%26)), 9) + "\n"
		if _, err := l.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if fi, _ := os.Stat(path); fi.Size() > 100 {
			t.Fatalf("log grew to %d bytes, past its cap of 100", fi.Size())
		}
	}
	if _, err := other.WriteString("stderr\n"); err != nil {
		t.Fatal(err)
	}
	live, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if !strings.HasSuffix(string(live), "dddddddd\nstderr\n") {
		t.Errorf("live log:\n%s", live)
	}
	if len(old) == 0 || len(old) > 50 || !strings.HasSuffix(string(old), "\n") {
		t.Errorf("rotated log (%d bytes):\n%s", len(old), old)
	}

	// A log already over the cap is rotated when opened.
	if err := os.WriteFile(path, []byte(strings.Repeat("x", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	l2, err := openCappedLog(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if fi, _ := os.Stat(path); fi.Size() != 0 {
		t.Errorf("an over-cap log was not rotated at open: %d bytes", fi.Size())
	}
}

//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/packaging"
)

// needTool returns the path of a tool from Debian's systemd package, or
// skips the test when it is missing (CI installs the package and sets
// PORTIER_TEST_REQUIRE_SYSTEMD so that a missing tool fails there).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("PORTIER_TEST_REQUIRE_SYSTEMD") != "" {
			t.Fatalf("%s is not installed, and PORTIER_TEST_REQUIRE_SYSTEMD is set", name)
		}
		t.Skipf("%s is not installed (Debian: apt-get install systemd); .ci/run installs it", name)
	}
	return p
}

// notifySocket listens where a service manager would receive sd_notify
// datagrams, and returns the next one within cliWait.
func notifySocket(t *testing.T, path string) func() string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func() string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(cliWait))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no sd_notify message: %v", err)
		}
		return string(buf[:n])
	}
}

// TestServeSocketActivation runs the broker the way portier.socket does:
// systemd-socket-activate binds the socket and, on the first connection,
// execs `portier serve` with LISTEN_FDS. The client that triggered it is
// served through a real echo backend by handoff, the broker reports
// READY=1 and, on SIGTERM, STOPPING=1, and the socket file, which the
// broker did not bind, is still there after it exits.
func TestServeSocketActivation(t *testing.T) {
	checkCLILeaks(t)
	ssa := needTool(t, "systemd-socket-activate")
	dir := cliTempDir(t)
	run, svc := filepath.Join(dir, "run"), filepath.Join(dir, "svc")
	for _, d := range []string{run, svc} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(svc, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "broker.sock")
	cleanupBackendsOf(t, sock)
	nextNotify := notifySocket(t, filepath.Join(dir, "notify.sock"))
	exe, _ := os.Executable()
	// systemd-socket-activate passes on only the variables named with -E.
	p := startPortier(t, nil, ssa, "-l", sock, "--fdname=broker",
		"-E", helperEnv+"=1", "-E", "GORACE="+os.Getenv("GORACE"), "-E", "NOTIFY_SOCKET="+filepath.Join(dir, "notify.sock"),
		exe, "serve", "--services", svc, "--log-level", "debug")
	p.waitLine(t, regexp.MustCompile(`^Listening on `+regexp.QuoteMeta(sock)))

	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	c, err := client.Dial(ctx, "echo", client.Socket(sock), client.AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(cliWait))
	if _, err := io.WriteString(c, "activated"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("activated"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "activated" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if c.Route() != client.Handoff {
		t.Errorf("route %v, want handoff", c.Route())
	}
	c.Close()
	p.waitLine(t, regexp.MustCompile(`msg="socket handed over by the service manager" socket=`+regexp.QuoteMeta(sock)))
	if got := nextNotify(); got != "READY=1" {
		t.Errorf("first notification %q, want READY=1", got)
	}

	code, out, _ := runCmd("status", "--json", "--socket", sock)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status = %d, %v", code, err)
	}
	// systemd-socket-activate execs the broker in its own process.
	if int(st.BrokerPID) != p.cmd.Process.Pid || st.Socket != sock {
		t.Errorf("status: broker pid %d socket %s; want pid %d (the activated process) and %s", st.BrokerPID, st.Socket, p.cmd.Process.Pid, sock)
	}
	pids := backendPIDs(t, sock)
	defer stopOrphans(t, pids)

	if err := p.stop(t); err != nil {
		t.Errorf("broker after SIGTERM: %v", err)
	}
	if got := nextNotify(); got != "STOPPING=1" {
		t.Errorf("notification at shutdown %q, want STOPPING=1", got)
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Errorf("the broker removed the socket systemd bound: %v", err)
	}
}

// TestInstallSystemd: install writes both units (which pass systemd's own
// verification), runs daemon-reload and enable --now on the socket, stops
// a broker that holds the socket first, and --uninstall undoes it.
// --dry-run changes nothing. There is no systemd user manager in a test
// environment, so systemctl is a script that records its arguments; the
// units themselves are checked by systemd-analyze.
func TestInstallSystemd(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	cfg, rt, bin := filepath.Join(dir, "cfg"), filepath.Join(dir, "rt"), filepath.Join(dir, "bin")
	for _, d := range []string{rt, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	calls := filepath.Join(dir, "systemctl.calls")
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte("#!/bin/sh\necho \"$*\" >> "+calls+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	t.Setenv("PORTIER_SOCKET", "")
	exe, _ := os.Executable()
	unitDir := filepath.Join(cfg, "systemd", "user")
	readCalls := func() string { b, _ := os.ReadFile(calls); return string(b) }

	if strings.Contains(exe, "/go-build") {
		code, _, errOut := runCmd("install", "--dry-run")
		if code != exitFailure || !strings.Contains(errOut, "built by 'go run'") {
			t.Errorf("install from a go-build binary = %d, %q; want a refusal", code, errOut)
		}
	}

	code, out, errOut := runCmd("install", "--dry-run", "--binary", exe)
	if code != exitOK || !strings.Contains(out, "# would write "+filepath.Join(unitDir, "portier.socket")) ||
		!strings.Contains(out, "systemctl --user enable --now portier.socket") || !strings.Contains(out, "\nListenStream=%t/portier/broker.sock\n") {
		t.Errorf("install --dry-run = %d, %q:\n%s", code, errOut, out)
	}
	if _, err := os.Stat(unitDir); err == nil || readCalls() != "" {
		t.Fatalf("--dry-run changed something: %v, calls %q", err, readCalls())
	}

	// A broker a client auto-started holds the socket's lock: install
	// stops it, and it exits cleanly.
	sock := filepath.Join(rt, "portier", "broker.sock")
	running := startPortier(t, nil, exe, "serve", "--socket", sock, "--services", filepath.Join(dir, "svc"))
	running.waitLine(t, regexp.MustCompile(`msg="broker listening"`))

	code, out, errOut = runCmd("install", "--binary", exe)
	if code != exitOK {
		t.Fatalf("install = %d, %q:\n%s", code, errOut, out)
	}
	for _, want := range []string{
		"stopped the running broker (pid ",
		"wrote " + filepath.Join(unitDir, "portier.socket"),
		"wrote " + filepath.Join(unitDir, "portier.service"),
		"running systemctl --user daemon-reload",
		"running systemctl --user enable --now portier.socket",
		"systemd now listens on " + sock,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	select {
	case err := <-running.waited:
		running.waited <- err
		if err != nil {
			t.Errorf("the stopped broker: %v", err)
		}
	case <-time.After(cliWait):
		t.Error("install did not stop the running broker")
	}
	if got, want := readCalls(), "--user daemon-reload\n--user enable --now portier.socket\n"; got != want {
		t.Errorf("systemctl calls %q, want %q", got, want)
	}
	svcUnit, err := os.ReadFile(filepath.Join(unitDir, "portier.service"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "\nExecStart=" + exe + " serve --services " + filepath.Join(cfg, "portier", "services") + "\n"; !strings.Contains(string(svcUnit), want) {
		t.Errorf("portier.service lacks %q:\n%s", want, svcUnit)
	}
	analyze := needTool(t, "systemd-analyze")
	verify := exec.Command(analyze, "--user", "verify", filepath.Join(unitDir, "portier.socket"), filepath.Join(unitDir, "portier.service"))
	if out, err := verify.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify on the installed units: %v\n%s", err, out)
	}

	if err := os.Remove(calls); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd("install", "--uninstall")
	if code != exitOK {
		t.Fatalf("install --uninstall = %d, %q:\n%s", code, errOut, out)
	}
	if got, want := readCalls(), "--user disable --now portier.socket portier.service\n--user daemon-reload\n"; got != want {
		t.Errorf("systemctl calls %q, want %q", got, want)
	}
	for _, name := range []string{"portier.socket", "portier.service"} {
		if _, err := os.Stat(filepath.Join(unitDir, name)); err == nil {
			t.Errorf("--uninstall left %s", name)
		}
	}
}

// TestLaunchdPlan: on macOS install writes the LaunchAgent with the
// resolved paths and a log file beside the socket, reloads it with
// bootout (allowed to fail) and bootstrap, and uninstall boots it out.
func TestLaunchdPlan(t *testing.T) {
	o := installOptions{binary: "/usr/local/bin/portier", socket: "/tmp/portier-501/broker.sock", services: "/Users/u/.config/portier/services",
		home: "/Users/u", uid: 501}
	p, err := launchdPlan(o)
	if err != nil {
		t.Fatal(err)
	}
	plist := "/Users/u/Library/LaunchAgents/" + packaging.LaunchdPlistName
	if len(p.write) != 1 || p.write[0].path != plist || !strings.Contains(p.write[0].body, "<string>/tmp/portier-501/broker.log</string>") {
		t.Errorf("writes %+v", p.write)
	}
	if len(p.commands) != 2 || !p.commands[0].mayFail || shellQuote(p.commands[0].args) != "launchctl bootout gui/501/io.github.portier.broker" ||
		shellQuote(p.commands[1].args) != "launchctl bootstrap gui/501 "+plist || p.commands[1].mayFail {
		t.Errorf("commands %+v", p.commands)
	}
	o.uninstall = true
	p, err = launchdPlan(o)
	if err != nil || len(p.write) != 0 || len(p.remove) != 1 || p.remove[0] != plist || shellQuote(p.commands[0].args) != "launchctl bootout gui/501/io.github.portier.broker" {
		t.Errorf("uninstall plan %+v, %v", p, err)
	}
}

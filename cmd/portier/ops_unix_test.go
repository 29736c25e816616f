//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// jsonPaths lists the key paths of a JSON document: "a", "b[].c", so that
// a test can pin the shape of --json output without its values.
func jsonPaths(t *testing.T, doc string) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, doc)
	}
	set := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				set[p] = true
				walk(p, c)
			}
		case []any:
			for _, c := range v {
				walk(prefix+"[]", c)
			}
		}
	}
	walk("", v)
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// cliDoc is docs/CLI.md, where the --json fields are documented.
func cliDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "CLI.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkShape compares the key paths of doc with want, and checks that
// docs/CLI.md documents every one of them (as `path`).
func checkShape(t *testing.T, what, doc string, want []string) {
	t.Helper()
	got := jsonPaths(t, doc)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("%s --json fields changed (add fields, never rename or drop them, and document them in docs/CLI.md)\n got: %q\nwant: %q", what, got, want)
	}
	docs := cliDoc(t)
	for _, p := range want {
		if !strings.Contains(docs, "`"+p+"`") {
			t.Errorf("docs/CLI.md does not document %s's field `%s`", what, p)
		}
	}
}

// TestJSONShapes pins the --json output of status, services, doctor and
// version to the fields docs/CLI.md documents: the shape is an interface
// scripts rely on.
func TestJSONShapes(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	setDialStdin(t, strings.NewReader("x"))
	if code, out, errOut := runCmd("dial", "echo", "--socket", tb.sock); code != exitOK || out != "x" {
		t.Fatalf("dial = %d, %q, %q", code, out, errOut)
	}
	if err := os.WriteFile(filepath.Join(tb.svcDir, "broken.toml"), []byte("name = \"broken\"\nversion = \"one\"\ncommand = [\"/x\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCmd("status", "--json", "--socket", tb.sock)
	if code != exitOK {
		t.Fatalf("status --json = %d: %s", code, errOut)
	}
	checkShape(t, "status", out, []string{"backends", "backends[].endpoint", "backends[].handoff_capable", "backends[].live_connections",
		"backends[].pid", "backends[].routed_connections", "backends[].service", "backends[].state", "backends[].uptime_ms", "backends[].version",
		"broker_pid", "connections", "error", "failures", "fallbacks", "handles_leaked", "handles_reclaimed", "handoffs", "running", "services_dir", "socket", "state_dir", "uptime_ms"})
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.BrokerPID != uint32(os.Getpid()) || st.ServicesDir != tb.svcDir || len(st.Backends) != 1 || st.Backends[0].Service != "echo" || st.Failures == nil {
		t.Errorf("status --json = %+v", st)
	}

	// Without a broker: still one object, running false, exit 1.
	code, out, _ = runCmd("status", "--json", "--socket", filepath.Join(tb.dir, "none.sock"))
	if err := json.Unmarshal([]byte(out), &st); code != exitFailure || err != nil || st.Running || st.Error == "" || st.Backends == nil {
		t.Errorf("status --json without a broker = %d, %+v, %v", code, st, err)
	}

	code, out, _ = runCmd("services", "--json", "--socket", tb.sock)
	if code != exitFailure { // broken.toml is invalid
		t.Errorf("services --json with an invalid definition = %d, want %d", code, exitFailure)
	}
	checkShape(t, "services", out, []string{"broker_pid", "error", "services", "services[].activation", "services[].command",
		"services[].error", "services[].file", "services[].handoff", "services[].name", "services[].valid", "services[].version",
		"services_dir", "source"})
	var sv servicesJSON
	if err := json.Unmarshal([]byte(out), &sv); err != nil {
		t.Fatal(err)
	}
	if sv.Source != sourceBroker || sv.ServicesDir != tb.svcDir || len(sv.Services) != 2 || sv.Services[0].Valid || !sv.Services[1].Valid {
		t.Errorf("services --json = %+v", sv)
	}

	code, out, _ = runCmd("doctor", "--json", "--socket", tb.sock)
	if code != exitFailure {
		t.Errorf("doctor --json with an invalid definition = %d, want %d", code, exitFailure)
	}
	checkShape(t, "doctor", out, []string{"checks", "checks[].check", "checks[].fix", "checks[].message", "checks[].status",
		"ok", "problems", "services_dir", "socket"})
	var dj doctorJSON
	if err := json.Unmarshal([]byte(out), &dj); err != nil {
		t.Fatal(err)
	}
	docs := cliDoc(t)
	for _, c := range dj.Checks {
		if !strings.Contains(docs, "`"+c.Check+"`") || !strings.Contains(docs, "`"+c.Status+"`") {
			t.Errorf("docs/CLI.md does not document check %q or status %q", c.Check, c.Status)
		}
	}
	if dj.OK || dj.Problems != 1 || dj.ServicesDir != tb.svcDir {
		t.Errorf("doctor --json = %+v", dj)
	}

	_, out, _ = runCmd("version", "--json")
	checkShape(t, "version", out, []string{"arch", "go", "modified", "module", "os", "revision", "revision_time", "version"})
}

// TestServicesAndDoctorAskTheBroker: without --services, services and
// doctor look where the running broker looks, not where this shell's
// environment points; with no broker they fall back to the environment
// and say so.
func TestServicesAndDoctorAskTheBroker(t *testing.T) {
	checkCLILeaks(t)
	tb := startTestBroker(t)
	elsewhere := cliTempDir(t)
	t.Setenv("XDG_CONFIG_HOME", elsewhere)
	envDir := filepath.Join(elsewhere, "portier", "services")

	code, out, errOut := runCmd("services", "--socket", tb.sock)
	if code != exitOK || !hasRow(out, "echo", "1.0.0") ||
		!strings.Contains(out, fmt.Sprintf("services directory %s (of the running broker, pid %d)", tb.svcDir, os.Getpid())) {
		t.Errorf("services with a broker = %d, %q:\n%s", code, errOut, out)
	}
	code, out, _ = runCmd("doctor", "--socket", tb.sock)
	if code != exitOK || !strings.Contains(out, "ok       services directory "+tb.svcDir+" (of the running broker") || !strings.Contains(out, "service echo@1.0.0") {
		t.Errorf("doctor with a broker = %d:\n%s", code, out)
	}

	none := filepath.Join(tb.dir, "none.sock")
	code, out, _ = runCmd("services", "--socket", none)
	want := fmt.Sprintf("services directory %s (from this environment: no broker answers on %s", envDir, none)
	if code != exitOK || !strings.Contains(out, want) || !strings.Contains(out, "no service definitions in "+envDir) {
		t.Errorf("services without a broker = %d; want %q:\n%s", code, want, out)
	}
	code, out, _ = runCmd("doctor", "--socket", none)
	if !strings.Contains(out, "note     "+want) {
		t.Errorf("doctor without a broker = %d; want %q:\n%s", code, want, out)
	}

	// --services wins over the broker's directory.
	code, out, _ = runCmd("services", "--socket", tb.sock, "--services", envDir)
	if code != exitOK || !strings.Contains(out, "services directory "+envDir+" (from --services)") {
		t.Errorf("services --services = %d:\n%s", code, out)
	}
}

// TestDoctorSocketPathSource: doctor says where the socket path came from,
// and without XDG_RUNTIME_DIR that it uses /tmp/portier-$UID and why that
// matters.
func TestDoctorSocketPathSource(t *testing.T) {
	checkCLILeaks(t)
	t.Setenv("PORTIER_SOCKET", "")
	os.Unsetenv("PORTIER_SOCKET")
	svc := filepath.Join(cliTempDir(t), "svc")
	fallback := fmt.Sprintf("/tmp/portier-%d/broker.sock", os.Geteuid())

	t.Setenv("XDG_RUNTIME_DIR", "")
	os.Unsetenv("XDG_RUNTIME_DIR")
	_, out, _ := runCmd("doctor", "--services", svc, "--json")
	var dj doctorJSON
	if err := json.Unmarshal([]byte(out), &dj); err != nil {
		t.Fatal(err)
	}
	if dj.Socket != fallback || len(dj.Checks) == 0 || dj.Checks[0].Check != "socket_path" || dj.Checks[0].Status != checkNote ||
		!strings.Contains(dj.Checks[0].Message, "XDG_RUNTIME_DIR is not set, so portier uses "+fallback) ||
		!strings.Contains(dj.Checks[0].Message, "would start or find another broker") {
		t.Errorf("doctor without XDG_RUNTIME_DIR: %+v", dj)
	}

	t.Setenv("XDG_RUNTIME_DIR", "relative/dir")
	_, out, _ = runCmd("doctor", "--services", svc)
	if !strings.Contains(out, `XDG_RUNTIME_DIR="relative/dir" is not an absolute path`) || !strings.Contains(out, fallback) {
		t.Errorf("doctor with a relative XDG_RUNTIME_DIR:\n%s", out)
	}

	rt := cliTempDir(t)
	t.Setenv("XDG_RUNTIME_DIR", rt)
	_, out, _ = runCmd("doctor", "--services", svc)
	if !strings.Contains(out, "ok       socket "+filepath.Join(rt, "portier", "broker.sock")+" (in $XDG_RUNTIME_DIR)") {
		t.Errorf("doctor with XDG_RUNTIME_DIR:\n%s", out)
	}
	_, out, _ = runCmd("doctor", "--services", svc, "--socket", filepath.Join(rt, "b.sock"))
	if !strings.Contains(out, "(from --socket)") {
		t.Errorf("doctor --socket:\n%s", out)
	}
}

// TestDoctorFixes: each problem's fix line is the command that fixes it
// and does not repeat the problem: chmod for a definition others can
// write (not "edit the file"), the line to edit for a syntax error, chmod
// 700 for an open socket directory.
func TestDoctorFixes(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	svc := filepath.Join(dir, "svc")
	if err := os.Mkdir(svc, 0o700); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(svc, "open.toml")
	if err := os.WriteFile(open, []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	// (WriteFile's mode is filtered by the umask; chmod is not.)
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(svc, "broken.toml")
	if err := os.WriteFile(broken, []byte("name = \"broken\"\nversion = \"one\"\ncommand = [\"/x\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runCmd("doctor", "--json", "--socket", filepath.Join(run, "broker.sock"), "--services", svc)
	var dj doctorJSON
	if err := json.Unmarshal([]byte(out), &dj); err != nil {
		t.Fatal(err)
	}
	fixes := map[string]string{}
	for _, c := range dj.Checks {
		if c.Status != checkProblem {
			continue
		}
		if c.Fix == "" || strings.Contains(c.Message, c.Fix) || strings.Contains(c.Fix, c.Message) {
			t.Errorf("fix %q repeats (or is missing from) its problem %q", c.Fix, c.Message)
		}
		fixes[c.Message] = c.Fix
	}
	want := map[string]string{
		"has mode 0666":      "chmod go-w " + open,
		"broken.toml:2:":     "edit line 2 of " + broken + "; the broker reads it again at the next Hello",
		"mode is 0755":       "chmod 700 " + run,
		"open.toml has mode": "chmod go-w " + open,
	}
	for inMessage, fix := range want {
		found := false
		for msg, f := range fixes {
			if strings.Contains(msg, inMessage) {
				found = true
				if f != fix {
					t.Errorf("problem %q: fix %q, want %q", msg, f, fix)
				}
			}
		}
		if !found {
			t.Errorf("no problem mentioning %q:\n%s", inMessage, out)
		}
	}
	if dj.Problems != 3 {
		t.Errorf("%d problems, want 3:\n%s", dj.Problems, out)
	}
}

// portierProc is the test binary running as `portier ARGS...` in its own
// process, its stderr read line by line.
type portierProc struct {
	cmd    *exec.Cmd
	lines  chan string
	waited chan error
}

// startPortier starts the test binary as the portier command (TestMain's
// helper switch is inherited). The process is killed, if still running,
// when the test ends.
func startPortier(t *testing.T, env []string, name string, args ...string) *portierProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &portierProc{cmd: cmd, lines: make(chan string, 1024), waited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody reads these any more
			}
		}
		close(p.lines)
		p.waited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if err, ok := <-p.waited; ok {
			p.waited <- err
		}
	})
	return p
}

// waitLine returns the first stderr line matching re (and its submatches).
func (p *portierProc) waitLine(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	timeout := time.After(cliWait)
	var seen []string
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("process ended before a line matching %s:\n%s", re, strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			if m := re.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-timeout:
			t.Fatalf("no line matching %s within %s:\n%s", re, cliWait, strings.Join(seen, "\n"))
		}
	}
}

// stop sends SIGTERM and returns the exit error.
func (p *portierProc) stop(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range p.lines { // drain until the process closes stderr
	}
	select {
	case err := <-p.waited:
		p.waited <- err
		return err
	case <-time.After(cliWait):
		t.Fatal("process did not exit after SIGTERM")
		return nil
	}
}

// backendPIDs asks the broker on sock for its backends' pids.
func backendPIDs(t *testing.T, sock string) []int {
	t.Helper()
	code, out, errOut := runCmd("status", "--json", "--socket", sock)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil {
		t.Fatalf("status --json = %d, %v, %s", code, err, errOut)
	}
	var pids []int
	for _, b := range st.Backends {
		pids = append(pids, int(b.PID))
	}
	return pids
}

// stopOrphans ends backends a stopped broker left running on purpose (the
// next broker would re-adopt them). They are not this process's children,
// so all there is to wait for is their disappearance from /proc.
func stopOrphans(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(cliWait)
	for _, pid := range pids {
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || (len(b) > 0 && strings.Contains(string(b), ") Z ")) {
				break
			}
			if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("backend %d did not exit", pid)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// cleanupBackendsOf makes sure, whatever happens to the test, that no
// backend the broker on sock started outlives it: a broker stopped by
// SIGTERM leaves its backends for the next broker, on purpose. Backends
// are found by the PORTIER_BROKER variable the broker gives them (Linux;
// elsewhere the test's own stopOrphans calls are all there is).
func cleanupBackendsOf(t *testing.T, sock string) {
	t.Helper()
	t.Cleanup(func() {
		want := []byte("PORTIER_BROKER=" + sock + "\x00")
		paths, _ := filepath.Glob("/proc/[0-9]*/environ")
		var pids []int
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err == nil && bytes.Contains(b, want) {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
				pids = append(pids, pid)
			}
		}
		stopOrphans(t, pids)
	})
}

// scrapeMetrics fetches and parses a Prometheus endpoint with Prometheus'
// own parser.
func scrapeMetrics(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	hc := &http.Client{Timeout: cliWait}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return mfs
}

// hasSeries reports whether family name has a series with the given labels
// and a value of at least min.
func hasSeries(mfs map[string]*dto.MetricFamily, name string, labels map[string]string, min float64) bool {
	for _, m := range mfs[name].GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		if match && v >= min {
			return true
		}
	}
	return false
}

// TestServeMetricsEndpoint: `serve --metrics-listen 127.0.0.1:0` serves
// /metrics over HTTP; after a client was served through a real backend the
// response, parsed by Prometheus' parser, counts the Hello under its
// service and carries the backend and the Go runtime and process metrics,
// as does `portier metrics`. A non-loopback address is refused.
func TestServeMetricsEndpoint(t *testing.T) {
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
	p := startPortier(t, nil, exe, "serve", "--socket", sock, "--services", svc, "--metrics-listen", "127.0.0.1:0")
	url := p.waitLine(t, regexp.MustCompile(`msg="metrics listening".* url=(http://\S+/metrics)`))[1]
	p.waitLine(t, regexp.MustCompile(`msg="broker listening"`))

	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	c, err := client.Dial(ctx, "echo", client.Socket(sock), client.AwaitReady())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(cliWait))
	io.WriteString(c, "m")
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	c.Close()
	pids := backendPIDs(t, sock)
	defer stopOrphans(t, pids)

	var mfs map[string]*dto.MetricFamily
	deadline := time.Now().Add(cliWait)
	for {
		// The handoff is counted when the backend's ACK arrives.
		mfs = scrapeMetrics(t, url)
		if hasSeries(mfs, "portier_hellos_total", map[string]string{"service": "echo", "outcome": "handoff"}, 1) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !hasSeries(mfs, "portier_hellos_total", map[string]string{"service": "echo", "outcome": "handoff"}, 1) {
		t.Errorf("no portier_hellos_total{service=\"echo\",outcome=\"handoff\"} in %v", mfs["portier_hellos_total"])
	}
	if !hasSeries(mfs, "portier_backends", map[string]string{"service": "echo", "version": "1.0.0"}, 1) ||
		!hasSeries(mfs, "portier_backend_routed_connections_total", map[string]string{"service": "echo", "pid": strconv.Itoa(pids[0])}, 1) {
		t.Errorf("backend series missing: %v %v", mfs["portier_backends"], mfs["portier_backend_routed_connections_total"])
	}
	for _, name := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
		if !hasSeries(mfs, name, nil, 1) {
			t.Errorf("%s missing", name)
		}
	}
	code, text, _ := runCmd("metrics", "--socket", sock)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	admin, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if code != exitOK || err != nil {
		t.Fatalf("portier metrics = %d, %v", code, err)
	}
	for name := range mfs {
		if _, ok := admin[name]; !ok {
			t.Errorf("portier metrics lacks %s, which the HTTP endpoint has", name)
		}
	}
	if err := p.stop(t); err != nil {
		t.Errorf("serve after SIGTERM: %v", err)
	}

	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		code, _, errOut := runCmd("serve", "--socket", filepath.Join(dir, "x.sock"), "--services", svc, "--metrics-listen", addr)
		if code != exitUsage || !strings.Contains(errOut, "--metrics-allow-remote") {
			t.Errorf("serve --metrics-listen %s = %d, %q; want a refusal naming --metrics-allow-remote", addr, code, errOut)
		}
	}
}

// TestDialAutoStart: `portier dial --auto-start` with no broker running
// starts one (this binary's serve), which serves the echo backend and logs
// to broker.log beside its socket.
func TestDialAutoStart(t *testing.T) {
	checkCLILeaks(t)
	dir := cliTempDir(t)
	cfg := filepath.Join(dir, "cfg")
	svc := filepath.Join(cfg, "portier", "services")
	if err := os.MkdirAll(svc, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(svc, "echo.toml"), []byte(echoDefinition(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CONFIG_HOME", cfg) // the started broker's default services directory
	exe, _ := os.Executable()
	t.Setenv("PORTIER_BIN", exe)
	sock := filepath.Join(dir, "run", "broker.sock")
	cleanupBackendsOf(t, sock)

	setDialStdin(t, strings.NewReader("started"))
	code, out, errOut := runCmd("dial", "echo", "--socket", sock)
	if code != exitFailure {
		t.Fatalf("dial without --auto-start and no broker = %d, %q, %q; want a failure", code, out, errOut)
	}
	setDialStdin(t, strings.NewReader("started"))
	code, out, errOut = runCmd("dial", "echo", "--socket", sock, "--auto-start")
	if code != exitOK || out != "started" {
		t.Fatalf("dial --auto-start = %d, %q, %q", code, out, errOut)
	}
	code, statusOut, _ := runCmd("status", "--json", "--socket", sock)
	var st statusJSON
	if err := json.Unmarshal([]byte(statusOut), &st); code != exitOK || err != nil {
		t.Fatalf("status = %d, %v", code, err)
	}
	pids := backendPIDs(t, sock)
	defer stopOrphans(t, pids)
	if st.ServicesDir != svc {
		t.Errorf("the started broker reads %s, want %s", st.ServicesDir, svc)
	}
	log, err := os.ReadFile(filepath.Join(dir, "run", "broker.log"))
	if err != nil || !strings.Contains(string(log), `msg="broker listening"`) {
		t.Errorf("broker.log: %v\n%s", err, log)
	}
	// Stop the broker; the client's reaper collects it.
	if err := syscall.Kill(int(st.BrokerPID), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(cliWait)
	for len(cliChildren(t)) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCappedLogRefusesSymlink: a link planted at the log path cannot
// redirect the broker's writes.
func TestCappedLogRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, filepath.Join(dir, "broker.log")); err != nil {
		t.Fatal(err)
	}
	if l, err := openCappedLog(filepath.Join(dir, "broker.log"), 100); err == nil {
		l.Close()
		t.Fatal("opened a log through a symbolic link")
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("the link's target was created")
	}
	// A new log is private (it may hold service names and paths), and so
	// is a directory made for it.
	newLog := filepath.Join(dir, "portier-501", "broker.log")
	l, err := openCappedLog(newLog, 100)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if fi, err := os.Stat(newLog); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new log: %v, %v; want mode 0600", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(newLog)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("log directory: %v, %v; want mode 0700", fi, err)
	}
}

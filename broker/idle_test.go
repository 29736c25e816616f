//go:build unix

package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/backend"
	"github.com/portier/portier/client"
	pb "github.com/portier/portier/wire/portierv1"
)

// Roles of the lifecycle tests: a backend written the way the README
// says (accept until the listener stops, then Shutdown), and one that
// fails with output that is not UTF-8.
func init() {
	extraRoles["lines"] = runLines
	extraRoles["fail-garbage"] = runFailGarbage
}

// runLines answers every line with "echo: <line>" and, when its listener
// stops (a quiesce), lets the connections in progress finish before it
// exits, as the README's backend does.
func runLines(ctx context.Context) int {
	l, err := backend.Listen(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lines role:", err)
		return 1
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := io.WriteString(c, "echo: "+line); err != nil {
					return
				}
			}
		}()
	}
	fmt.Fprintln(os.Stderr, "lines role: listener stopped; draining", l.LiveConnections())
	if err := l.Shutdown(context.Background()); err != nil {
		return 1
	}
	fmt.Fprintln(os.Stderr, "lines role: drained")
	return 0
}

// runFailGarbage prints a lot, ending in bytes that are not UTF-8, and
// exits 3 without registering.
func runFailGarbage(context.Context) int {
	for i := range 200 {
		fmt.Fprintf(os.Stderr, "noise line %d %s\n", i, strings.Repeat("x", 60))
	}
	os.Stderr.Write([]byte("fatal: cannot open \xff\xfe\xc3 database\n"))
	return 3
}

// lineConn is a client connection of the lines role.
type lineConn struct {
	t *testing.T
	c *client.Conn
	r *bufio.Reader
}

func dialLines(t *testing.T, h *harness) *lineConn {
	t.Helper()
	c, err := h.dial("lines")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{t: t, c: c, r: bufio.NewReader(c)}
}

// roundTrip sends one line and checks its answer.
func (lc *lineConn) roundTrip(line string) {
	lc.t.Helper()
	_ = lc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(lc.c, line+"\n"); err != nil {
		lc.t.Fatalf("write %q: %v", line, err)
	}
	got, err := lc.r.ReadString('\n')
	if err != nil || got != "echo: "+line+"\n" {
		lc.t.Fatalf("answer to %q: %q, %v", line, got, err)
	}
}

// procOf returns the supervisor's record of the backend with pid.
func (h *harness) procOf(pid uint32) *proc {
	h.t.Helper()
	h.b.sup.mu.Lock()
	defer h.b.sup.mu.Unlock()
	p := h.b.sup.byPID[int(pid)]
	if p == nil {
		h.t.Fatalf("pid %d is not in the supervisor's table", pid)
	}
	return p
}

func backendByPID(st *pb.Status, pid uint32) *pb.BackendStatus {
	for _, b := range st.GetBackends() {
		if b.GetPid() == pid {
			return b
		}
	}
	return nil
}

// TestLongConnectionOutlivesIdleTimeout is the case: a backend
// serving one long connection, a line a second, past its idle_timeout of
// 1 s. Every line is answered, the backend is never asked to quiesce while
// the connection is open (it reports it), a Hello meanwhile reaches the
// same process, and only once the connection has closed and idle_timeout
// has passed does the backend quiesce and exit.
func TestLongConnectionOutlivesIdleTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	const idle = time.Second
	h.define("lines", "1.0.0", "lines", fmt.Sprintf("idle_timeout = %q\n", idle))
	lc := dialLines(t, h)
	lc.roundTrip("line 1")
	be := h.onlyBackend()
	p := h.procOf(be.GetPid())
	eventually(t, 10*time.Second, "the backend to report its connection", func() bool {
		n, ok := p.liveConnections()
		return ok && n == 1
	})
	for i := 2; i <= 5; i++ {
		time.Sleep(time.Second) // the connection is in use, and idle_timeout passes between lines
		lc.roundTrip("line " + strconv.Itoa(i))
		if b := backendByPID(h.b.status(), be.GetPid()); b == nil || b.GetState() != "registered" {
			t.Fatalf("after line %d the backend is %v, want registered (not quiescing)", i, b)
		}
	}
	// A second client meanwhile reaches the same process.
	other := dialLines(t, h)
	other.roundTrip("other")
	other.c.Close()
	if n := h.spawns("lines", "started"); n != 1 {
		t.Fatalf("spawns = %d during the long connection, want 1", n)
	}
	select {
	case <-p.exited:
		t.Fatal("the backend exited while its connection was open")
	default:
	}

	closed := time.Now()
	lc.c.Close()
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("backend still running 20 s after its last connection closed")
	}
	if d := time.Since(closed); d < idle {
		t.Fatalf("backend exited %s after its last connection closed; want idle_timeout %s first", d, idle)
	}
}

// TestVersionBumpRetiresOldBackendAtOnce: once the definition names a new
// version, the old backend, which nothing can reach any more, is retired
// within the janitor's tick, not after its idle_timeout (10 minutes); a
// connection it is serving is not cut, and it exits once that closes.
func TestVersionBumpRetiresOldBackendAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("lines", "1.0.0", "lines", "")
	lc := dialLines(t, h)
	lc.roundTrip("before the bump")
	old := h.procOf(h.onlyBackend().GetPid())

	h.define("lines", "1.1.0", "lines", "")
	eventually(t, 10*time.Second, "the old backend to be retired", func() bool { return old.quiesced.Load() })
	lc.roundTrip("after the bump") // the live connection is served on
	select {
	case <-old.exited:
		t.Fatal("the retired backend exited with a connection open")
	default:
	}
	lc.c.Close()
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("retired backend still running 10 s after its last connection closed")
	}
	next := dialLines(t, h)
	next.roundTrip("new version")
	if v := next.c.DaemonVersion(); v != "1.1.0" {
		t.Fatalf("served by %s, want 1.1.0", v)
	}
}

// writeLauncher writes an executable script at path that runs this test
// binary (whose role the definition's env names); rewriting it stands for
// rebuilding a backend's program. It is written beside and renamed into
// place, as build tools do.
func writeLauncher(t *testing.T, path, comment string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".new"
	body := fmt.Sprintf("#!/bin/sh\n# %s\nexec %s \"$@\"\n", comment, strconv.Quote(exe))
	if err := os.WriteFile(tmp, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestRebuiltProgramStartsNewBackend: after the program a definition names
// is rebuilt in place, the next Hello starts the new program; the old
// process takes no new connections, keeps serving the one it has, and exits
// once that closes.
func TestRebuiltProgramStartsNewBackend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	launcher := filepath.Join(h.dir, "lines-backend")
	writeLauncher(t, launcher, "build 1")
	body := fmt.Sprintf("name = \"lines\"\nversion = \"1.0.0\"\ncommand = [%s]\nenv = { %s = \"lines\" }\n", strconv.Quote(launcher), roleEnv)
	writeFileAtomicTest(t, filepath.Join(h.svcDir, "lines.toml"), body)

	first := dialLines(t, h)
	first.roundTrip("from build 1")
	oldPID := h.onlyBackend().GetPid()
	old := h.procOf(oldPID)

	writeLauncher(t, launcher, "build 2")
	second := dialLines(t, h)
	second.roundTrip("from build 2")
	st := h.b.status()
	if len(st.GetBackends()) != 2 {
		t.Fatalf("backends after the rebuild: %v, want the old one draining and a new one", st.GetBackends())
	}
	if b := backendByPID(st, oldPID); b == nil || b.GetState() != "quiescing" {
		t.Fatalf("old backend after the rebuild: %v, want quiescing", b)
	}
	if n := h.spawns("lines", "started"); n != 2 {
		t.Fatalf("spawns = %d, want 2: the Hello after the rebuild starts the new program", n)
	}
	first.roundTrip("old process still serves its connection")
	third := dialLines(t, h)
	third.roundTrip("new Hellos go to build 2")
	if n := h.spawns("lines", "started"); n != 2 {
		t.Fatalf("spawns = %d, want still 2", n)
	}
	first.c.Close()
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("old backend still running 10 s after its last connection closed")
	}
}

// TestRestartAndStop drives the admin verbs: restart starts a new backend
// at once while the old one drains its connection; stop retires every
// backend of the service, and the next Hello starts one again.
func TestRestartAndStop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("lines", "1.0.0", "lines", "")
	lc := dialLines(t, h)
	lc.roundTrip("hello")
	oldPID := h.onlyBackend().GetPid()
	old := h.procOf(oldPID)

	res := h.b.sup.restartService("lines")
	if res.GetStartRefused() != nil || res.GetStarted() == nil || res.GetStarted().GetPid() == oldPID {
		t.Fatalf("restart = %v, want a new backend started", res)
	}
	if len(res.GetStopped()) != 1 || res.GetStopped()[0].GetPid() != oldPID {
		t.Fatalf("restart stopped %v, want pid %d", res.GetStopped(), oldPID)
	}
	newPID := res.GetStarted().GetPid()
	lc.roundTrip("still served by the old process")
	next := dialLines(t, h)
	next.roundTrip("to the new one")
	if b := backendByPID(h.b.status(), newPID); b == nil || b.GetConnections() != 1 {
		t.Fatalf("new backend after a Hello: %v, want the Hello routed to it", b)
	}
	lc.c.Close()
	select {
	case <-old.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("restarted backend's predecessor still running 10 s after its connection closed")
	}

	stopped := h.b.sup.stopService("lines", "test")
	if len(stopped) != 1 || stopped[0].pid != int(newPID) {
		t.Fatalf("stop = %v, want pid %d", stopped, newPID)
	}
	next.roundTrip("draining, still served")
	next.c.Close()
	select {
	case <-stopped[0].exited:
	case <-time.After(10 * time.Second):
		t.Fatal("stopped backend still running")
	}
	again := dialLines(t, h)
	again.roundTrip("started again")
	if n := h.spawns("lines", "started"); n != 3 {
		t.Fatalf("spawns = %d, want 3", n)
	}

	h.define("broken", "1.0.0", "fail", "")
	if res := h.b.sup.restartService("broken"); res.GetStartRefused().GetCode() != pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED ||
		!strings.Contains(res.GetStartRefused().GetReason(), "fatal: the database file is locked") {
		t.Fatalf("restart of a failing service = %v, want its spawn refusal with the output", res)
	}
	if res := h.b.sup.restartService("nosuch"); res.GetStartRefused().GetCode() != pb.ErrorCode_ERROR_SERVICE_UNKNOWN {
		t.Fatalf("restart of an undefined service = %v, want SERVICE_UNKNOWN", res)
	}
}

// TestReloadRetiresChangedDefinitions: Reload (SIGHUP) retires at once a
// backend whose definition now starts it differently.
func TestReloadRetiresChangedDefinitions(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("lines", "1.0.0", "lines", "")
	lc := dialLines(t, h)
	lc.roundTrip("hello")
	p := h.procOf(h.onlyBackend().GetPid())
	h.b.Reload()
	if p.quiesced.Load() {
		t.Fatal("Reload retired a backend whose definition did not change")
	}
	h.define("lines", "1.0.0", "lines", "dir = \"/\"\n")
	h.b.Reload()
	if !p.quiesced.Load() {
		t.Fatal("Reload kept a backend whose definition's working directory changed")
	}
	lc.roundTrip("drains")
}

// TestReadoptedBackendRebuiltWhileBrokerWasDown: the state file keeps the
// program's stamp, so a broker that re-adopts a backend whose program was
// rebuilt while no broker ran retires it, and the next Hello starts the new
// build.
func TestReadoptedBackendRebuiltWhileBrokerWasDown(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	launcher := filepath.Join(h.dir, "echo-backend")
	writeLauncher(t, launcher, "build 1")
	body := fmt.Sprintf("name = \"echo\"\nversion = \"1.0.0\"\ncommand = [%s]\nenv = { %s = \"echo\" }\n", strconv.Quote(launcher), roleEnv)
	writeFileAtomicTest(t, filepath.Join(h.svcDir, "echo.toml"), body)
	first := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")
	statePath := filepath.Join(filepath.Dir(h.sock), stateFileName)
	eventually(t, 10*time.Second, "the state file to record the backend and its program's stamp", func() bool {
		data, err := os.ReadFile(statePath)
		var st stateFile
		if err != nil || json.Unmarshal(data, &st) != nil {
			return false
		}
		return len(st.Backends) == 1 && st.Backends[0].PID == int(be.GetPid()) && st.Backends[0].ExeStamp != nil
	})
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := first.waitExit(10 * time.Second); !ok {
		t.Fatal("SIGKILLed broker still running")
	}
	writeLauncher(t, launcher, "build 2")
	second := startBrokerProc(t, h)
	eventually(t, 15*time.Second, "the re-adopted backend of the old build to be retired", func() bool {
		st, err := adminStatus(h.sock)
		return err == nil && backendByPID(st, be.GetPid()) == nil
	})
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "build 2")
	c.Close()
	st := mustStatus(t, h.sock)
	if len(st.GetBackends()) != 1 || st.GetBackends()[0].GetPid() == be.GetPid() {
		t.Fatalf("backends = %v, want one new process", st.GetBackends())
	}
	killGroupAtCleanup(t, int(st.GetBackends()[0].GetPid()))
	if !strings.Contains(second.logText(), "changed") {
		t.Errorf("the broker's log does not say why it retired the backend:\n%s", second.logText())
	}
}

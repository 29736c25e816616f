//go:build linux

package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/ipc"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
)

// Death of re-adopted backends (issue 11 item 4). A backend a previous
// broker started is not the new broker's child: no Wait tells it about the
// exit. These tests make the test process a child subreaper, as a service
// manager or the chaos soak is, so a backend orphaned by a killed broker
// becomes the test's child and, once killed, stays a zombie until the test
// reaps it: a process check that counted a zombie as alive would keep
// routing clients to its dead endpoint.

// subreaper makes this process the child subreaper of everything it starts
// until the test ends. Orphans reparented meanwhile stay zombies until
// reap is called for them (or this process exits); nothing else here waits
// for them, so no other test's Wait is disturbed.
func subreaper(t *testing.T) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("cannot become a child subreaper: %v", err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
}

// reap collects pid's exit status once it has exited (it must be this
// process's child by then), at most within d.
func reap(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if got == pid || errors.Is(err, unix.ECHILD) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("pid %d not reaped within %s: %v", pid, d, err)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// isZombie reports whether pid is an exited process nobody reaped yet, all
// of its threads gone. The thread-group leader shows "Z" as soon as it has
// exited itself, while other threads of a Go process may still be exiting;
// the descriptors they share (the backend's listener among them) close only
// with the last of them, so until then a connect to the backend's socket can
// still land in its backlog, to be reset a moment later.
func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return false
	}
	// After the command: state (field 3) ... num_threads (field 20).
	f := strings.Fields(string(data[i+1:]))
	return len(f) > 17 && f[0] == "Z" && f[17] == "1"
}

// waitRecorded waits until the broker's state file records pid.
func waitRecorded(t *testing.T, h *harness, pid uint32) {
	t.Helper()
	statePath := filepath.Join(filepath.Dir(h.sock), stateFileName)
	eventually(t, 5*time.Second, "the state file to record the backend", func() bool {
		data, err := os.ReadFile(statePath)
		var st stateFile
		if err != nil || json.Unmarshal(data, &st) != nil {
			return false
		}
		for _, r := range st.Backends {
			if r.PID == int(pid) {
				return true
			}
		}
		return false
	})
}

// restartBroker SIGKILLs broker p (its backends live on, orphaned) and
// starts a new broker process on the same directory.
func restartBroker(t *testing.T, h *harness, p *brokerProc) *brokerProc {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.waitExit(10 * time.Second); !ok {
		t.Fatal("SIGKILLed broker still running")
	}
	return startBrokerProc(t, h)
}

// backendState returns the state `portier status` gives pid, "" when it
// does not list it.
func backendState(h *harness, pid uint32) string {
	st, err := adminStatus(h.sock)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	for _, b := range st.GetBackends() {
		if b.GetPid() == pid {
			return b.GetState()
		}
	}
	return ""
}

// TestReadoptedBackendCrashNeverRoutesToItsPipe: after a broker restart, a
// re-adopted backend is SIGKILLed. Its process stays a zombie (nobody reaps
// it during the test), yet every client from its exit on is served, by a
// new backend, without a single ErrBackendUnavailable; `portier status`
// stops listing the dead pid, and its socket file is gone.
func TestReadoptedBackendCrashNeverRoutesToItsPipe(t *testing.T) {
	subreaper(t)
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	first := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")
	pid := be.GetPid()
	waitRecorded(t, h, pid)
	second := restartBroker(t, h, first)
	eventually(t, 10*time.Second, "the backend to re-register", func() bool { return backendState(h, pid) == "registered" })

	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reap(t, int(pid), 10*time.Second) })
	// Once the process has exited (a client racing the kill itself may
	// find its listener closing under it), every client must be served.
	eventually(t, 10*time.Second, "the killed backend to be a zombie", func() bool { return isZombie(int(pid)) })
	for i := 0; i < 40; i++ {
		c, err := h.dial("echo")
		if err != nil {
			t.Fatalf("dial %d after the re-adopted backend was killed: %v", i, err)
		}
		echo(t, c, fmt.Sprintf("after the kill %d", i))
		c.Close()
	}
	st := mustStatus(t, h.sock)
	for _, b := range st.GetBackends() {
		if b.GetPid() == pid {
			t.Errorf("status lists the killed backend pid %d (%s)", pid, b.GetState())
		}
	}
	if len(st.GetBackends()) != 1 {
		t.Errorf("backends after the kill: %v, want the one new backend", st.GetBackends())
	} else {
		killGroupAtCleanup(t, int(st.GetBackends()[0].GetPid()))
	}
	if !isZombie(int(pid)) {
		t.Errorf("pid %d is no zombie: the test did not exercise what it is about", pid)
	}
	if _, err := os.Stat(be.GetEndpoint()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed backend's socket %s: %v, want removed", be.GetEndpoint(), err)
	}
	if !strings.Contains(second.logText(), "backend started") {
		t.Error("the new broker never started a replacement")
	}
}

// TestReadoptedBackendThatNeverReRegistersIsReplaced: a recorded backend
// that is alive but does not re-register (stopped here with SIGSTOP) does
// not fail the Hellos waiting for it: after ReadoptWait they are served by a
// new backend. Continued, the old backend finds its registration refused
// and exits by itself.
func TestReadoptedBackendThatNeverReRegistersIsReplaced(t *testing.T) {
	subreaper(t)
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	first := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")
	pid := be.GetPid()
	waitRecorded(t, h, pid)
	if err := syscall.Kill(int(pid), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(int(pid), syscall.SIGKILL)
		_ = syscall.Kill(int(pid), syscall.SIGCONT)
		reap(t, int(pid), 10*time.Second)
	})
	restartBroker(t, h, first)
	h.waitListening()

	c, err := h.dial("echo")
	if err != nil {
		t.Fatalf("dial while the recorded backend does not re-register: %v", err)
	}
	echo(t, c, "served by a replacement")
	c.Close()
	st := mustStatus(t, h.sock)
	if len(st.GetBackends()) != 1 || st.GetBackends()[0].GetPid() == pid {
		t.Fatalf("backends = %v, want one new backend (not the stopped pid %d)", st.GetBackends(), pid)
	}
	killGroupAtCleanup(t, int(st.GetBackends()[0].GetPid()))

	if err := syscall.Kill(int(pid), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the replaced backend to exit by itself", func() bool {
		return isZombie(int(pid)) || !processExists(int(pid))
	})
}

func processExists(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// TestDeadBackendSocketsRemovedByNextBroker: a backend that dies while no
// broker runs leaves its socket file behind; the next broker removes it (and
// any other backend socket no live backend owns), and drops its record.
func TestDeadBackendSocketsRemovedByNextBroker(t *testing.T) {
	subreaper(t)
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	first := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")
	pid := be.GetPid()
	waitRecorded(t, h, pid)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := first.waitExit(10 * time.Second); !ok {
		t.Fatal("SIGKILLed broker still running")
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reap(t, int(pid), 10*time.Second)
	stray := filepath.Join(filepath.Dir(h.sock), "be-0123456789-deadbeef.sock")
	if err := os.WriteFile(stray, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{be.GetEndpoint(), stray} {
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("%s before the next broker: %v", path, err)
		}
	}
	second := startBrokerProc(t, h)
	eventually(t, 10*time.Second, "the new broker to answer", func() bool { _, err := adminStatus(h.sock); return err == nil })
	for _, path := range []string{be.GetEndpoint(), stray} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after the next broker started: %v, want removed", path, err)
		}
	}
	if !strings.Contains(second.logText(), "dropping state record of a gone backend") {
		t.Error("the dead backend's state record was not dropped")
	}
}

// TestExitWatchNonChild: the exit watch notices the exit of a process that
// is not this process's child (its parent is a shell that reaps it), refuses
// a pid that has exited or names another process, and ends without a
// verdict when closed.
func TestExitWatchNonChild(t *testing.T) {
	// The shell prints its background child's pid and waits for it.
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		t.Fatal(err)
	}
	start, err := ipc.ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newExitWatch(pid, start+1); !errors.Is(err, errProcessGone) {
		t.Fatalf("watch with another start time: %v, want errProcessGone", err)
	}
	idle, err := newExitWatch(pid, start)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan bool)
	go func() { closed <- idle.wait() }()
	idle.close()
	if exited := <-closed; exited {
		t.Fatal("a closed watch reported an exit")
	}

	w, err := newExitWatch(pid, start)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	done := make(chan bool)
	go func() { done <- w.wait() }()
	select {
	case <-done:
		t.Fatal("wait returned while the process runs")
	case <-time.After(50 * time.Millisecond):
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case exited := <-done:
		if !exited {
			t.Fatal("wait returned false for an exit")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exit not noticed within 10s")
	}
	eventually(t, 10*time.Second, "the shell to reap its child", func() bool { return !processExists(pid) })
	if _, err := newExitWatch(pid, start); !errors.Is(err, errProcessGone) {
		t.Fatalf("watch of an exited process: %v, want errProcessGone", err)
	}
}

// recordedSleeper starts a broker whose state file records a process that
// never registers (sleep, a child of the test) as a backend of echo, and
// returns the broker, the re-adopted proc, the process and a stop that
// ends Serve and returns its error.
func recordedSleeper(t *testing.T, tweak func(*Config)) (*Broker, *proc, *exec.Cmd, func() error) {
	t.Helper()
	dir := shortTempDir(t)
	run, svc := filepath.Join(dir, "run"), filepath.Join(dir, "svc")
	for _, d := range []string{run, svc} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	(&harness{t: t, svcDir: svc}).define("echo", "1.0.0", "echo", "")
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pid := sleeper.Process.Pid
	start, err := ipc.ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := json.Marshal(stateFile{Version: 1, Backends: []stateRecord{{
		Service: "echo", Version: "1.0.0", PID: pid, StartTime: start,
		Endpoint: filepath.Join(run, "be-0123456789-00000000.sock"), SecretSHA256: strings.Repeat("00", 32),
	}}})
	if err := os.WriteFile(filepath.Join(run, stateFileName), st, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Socket: filepath.Join(run, "broker.sock"), ServicesDir: svc,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	tweak(&cfg)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	stopped := false
	stop := func() error {
		stopped = true
		cancel()
		select {
		case err := <-served:
			return err
		case <-time.After(15 * time.Second):
			return errors.New("broker did not stop within 15s")
		}
	}
	t.Cleanup(func() {
		if !stopped {
			_ = stop()
		}
	})
	<-b.Listening()
	var p *proc
	eventually(t, 5*time.Second, "the recorded backend to be re-adopted", func() bool {
		b.sup.mu.Lock()
		defer b.sup.mu.Unlock()
		p = b.sup.byPID[pid]
		return p != nil
	})
	return b, p, sleeper, stop
}

// TestShutdownAnswersRetiredReadoptedBackend: a recorded backend retired
// before it re-registered (`portier stop` here) is no longer routed to, yet
// Hellos may still be parked on it. Shutdown answers them, and stops its
// readopt timer, rather than leaving both to ReadoptWait, after Serve.
func TestShutdownAnswersRetiredReadoptedBackend(t *testing.T) {
	b, p, _, stop := recordedSleeper(t, func(c *Config) { c.ReadoptWait = time.Minute })
	b.sup.stopService("echo", "portier stop")
	if isClosed(p.ready) {
		t.Fatal("the retired backend is ready before it registered")
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	var rf *refusal
	if !isClosed(p.ready) || !errors.As(p.readyErr, &rf) || rf.code != pb.ErrorCode_ERROR_SHUTTING_DOWN {
		t.Errorf("after Serve, the retired re-adopted backend's Hellos are unanswered (ready closed %v, err %v), want SHUTTING_DOWN",
			isClosed(p.ready), p.readyErr)
	}
}

// TestReadoptedBackendExitNotReportedAsUnregistered: a recorded backend
// that exits before it re-registers is logged as exited, not, once
// ReadoptWait has passed, as one that is alive but did not re-register.
func TestReadoptedBackendExitNotReportedAsUnregistered(t *testing.T) {
	var logs syncBuffer
	const wait = 200 * time.Millisecond
	_, p, sleeper, _ := recordedSleeper(t, func(c *Config) {
		c.ReadoptWait = wait
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	if p.watch == nil {
		t.Skip("no exit watch (pidfd) on this kernel")
	}
	if err := sleeper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the re-adopted backend's exit was not seen")
	}
	time.Sleep(2 * wait) // past ReadoptWait
	if text := logs.String(); strings.Contains(text, "did not re-register") {
		t.Errorf("an exited re-adopted backend is logged as one that did not re-register:\n%s", text)
	}
}

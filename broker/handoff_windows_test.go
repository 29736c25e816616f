package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/windows"
)

// The Windows handoff end to end: real broker, real backend processes,
// real pipe handles duplicated into them. Tests that set testHookTransferred
// or count outcomes do not run in parallel.

// warm starts service's backend without offering it a handle.
func (h *winHarness) warm(service string) {
	h.t.Helper()
	c, err := h.rawDial(service, dialOpts{noHandoff: true})
	if err != nil {
		h.t.Fatalf("warm-up dial: %v", err)
	}
	echoes(h.t, c, "warm")
	c.Close()
}

func TestWindowsHandoffWithPayload(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("echo", "echo", "")
	h.warm("echo")
	for i := range 10 {
		c, err := h.rawDial("echo", dialOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if c.route != "handoff" {
			t.Fatalf("dial %d: route %s (fell back: %s), want handoff", i, c.route, c.fellBack)
		}
		echoes(t, c, fmt.Sprintf("payload %d through the duplicated handle", i))
		c.Close()
	}
	h.settle()
	st := h.b.orch.Stats()
	if st.Completed != 10 || st.TotalFallbacks() != 0 || st.Leaked != 0 || st.Reclaimed != 0 {
		t.Fatalf("stats %+v, want 10 completed and nothing else", st)
	}
}

func TestWindowsEarlyData(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("echo", "echo", "")
	h.warm("echo")
	for _, route := range []struct {
		name string
		opts dialOpts
	}{
		{"handoff", dialOpts{}},
		{"reconnect", dialOpts{noHandoff: true}},
	} {
		t.Run(route.name, func(t *testing.T) {
			early := strings.Repeat("pipelined-after-hello;", 100)
			route.opts.early = []byte(early)
			c, err := h.rawDial("echo", route.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.route != route.name {
				t.Fatalf("route %s, want %s", c.route, route.name)
			}
			// The broker read exactly the Hello: the bytes behind it were
			// still in the pipe for the backend, whole and in order.
			readEcho(t, c, early)
			echoes(t, c, "and after")
		})
	}
}

func TestWindowsBackendRejects(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("rej", "reject", "")
	h.warm("rej")
	const n = 3
	for i := range n {
		// A ready timeout far longer than the test's bound: only a backend
		// that closed its handle lets the client see EOF at once.
		c, err := h.rawDial("rej", dialOpts{readyTimeout: 30 * time.Second})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if c.route != "reconnect" || c.fellBack != "eof" {
			t.Fatalf("route %s after %q, want reconnect after EOF (the backend closes the handle it rejects)", c.route, c.fellBack)
		}
		echoes(t, c, "served by backend_pipe after a rejected offer")
		c.Close()
	}
	h.settle()
	st := h.b.orch.Stats()
	if got := st.Fallback(handoff.StageAcknowledge, handoff.ReasonBackendRejected); got != n || st.Leaked != 0 || st.Reclaimed != 0 {
		t.Fatalf("stats %+v, want %d backend_rejected fallbacks and no leaked or reclaimed handle", st, n)
	}
	lines := h.fallbackLines()
	if len(lines) != n || !strings.Contains(lines[0], "handle_value=0x") || !strings.Contains(lines[0], "leaked=false") {
		t.Fatalf("fallback log lines %q, want %d naming the handle value, not leaked", lines, n)
	}
}

func TestWindowsBackendNeverAcks(t *testing.T) {
	h := newWinHarness(t, func(c *Config) { c.Handoff.AckDeadline = 300 * time.Millisecond })
	h.define("mute", "hold", "")
	h.warm("mute")
	c, err := h.rawDial("mute", dialOpts{readyTimeout: time.Second})
	if err != nil {
		t.Fatalf("dial: %v (a silent backend must not be a client error)", err)
	}
	// The backend keeps its copy of the handle, so the client sees no EOF:
	// only its ready timeout sends it to the reconnect route.
	if c.route != "reconnect" || c.fellBack != "timeout" {
		t.Fatalf("route %s after %q, want reconnect after the ready timeout", c.route, c.fellBack)
	}
	echoes(t, c, "served by backend_pipe after the ACK deadline")
	c.Close()
	h.settle()
	st := h.b.orch.Stats()
	if st.Fallback(handoff.StageAwaitAck, handoff.ReasonAckTimeout) != 1 || st.Leaked != 1 {
		t.Fatalf("stats %+v, want one await_ack/ack_timeout fallback that leaked its handle", st)
	}
	if v := h.metric("portier_handoff_handles_leaked_total", nil); v != 1 {
		t.Errorf("portier_handoff_handles_leaked_total = %v, want 1", v)
	}
	if v := h.metric("portier_handoff_handles_reclaimed_total", nil); v != 0 {
		t.Errorf("portier_handoff_handles_reclaimed_total = %v, want 0", v)
	}
	if st := h.b.status(); st.GetHandlesLeaked() != 1 || st.GetHandlesReclaimed() != 0 {
		t.Errorf("status handles leaked %d, reclaimed %d; want 1, 0", st.GetHandlesLeaked(), st.GetHandlesReclaimed())
	}
	lines := h.fallbackLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "leaked=true") ||
		!strings.Contains(lines[0], "handle_value=0x") || !strings.Contains(lines[0], "reason=ack_timeout") {
		t.Fatalf("fallback log lines %q, want one warning naming the leaked handle's value", lines)
	}
}

// setTransferHook runs fn after each Transfer until the test ends.
func setTransferHook(t *testing.T, fn func(pid int)) {
	testHookTransferred = fn
	t.Cleanup(func() { testHookTransferred = nil })
}

// terminate kills process pid and waits until it has exited.
func terminate(t *testing.T, pid int) {
	t.Helper()
	ph, err := windows.OpenProcess(windows.PROCESS_TERMINATE|windows.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		t.Errorf("open backend %d: %v", pid, err)
		return
	}
	defer windows.CloseHandle(ph)
	if err := windows.TerminateProcess(ph, 9); err != nil {
		t.Errorf("terminate backend %d: %v", pid, err)
	}
	if ev, err := windows.WaitForSingleObject(ph, 10_000); err != nil || ev != windows.WAIT_OBJECT_0 {
		t.Errorf("backend %d did not exit: %d, %v", pid, ev, err)
	}
}

func TestWindowsBackendExitsBetweenDuplicateAndDeliver(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("echo", "echo", "")
	h.warm("echo")
	first := h.backendPID("echo")
	var once sync.Once
	setTransferHook(t, func(pid int) { once.Do(func() { terminate(t, pid) }) })

	c, err := h.rawDial("echo", dialOpts{readyTimeout: 30 * time.Second})
	// The handle died with the backend and the broker closed its copy: EOF
	// at once. The dead backend's pipe is gone too (a real client then
	// sends a fresh Hello).
	if c == nil || c.fellBack != "eof" || err == nil {
		t.Fatalf("dial: %+v, %v; want EOF instead of the ready event, then a failed reconnect to the dead backend", c, err)
	}
	h.settle()
	st := h.b.orch.Stats()
	if st.Reclaimed != 1 || st.Leaked != 0 || st.Completed != 0 {
		t.Fatalf("stats %+v, want the handle of the dead backend counted as reclaimed, nothing leaked", st)
	}
	if st.Fallback(handoff.StageDeliver, handoff.ReasonTransferFailed)+st.Fallback(handoff.StageDeliver, handoff.ReasonIntegrityMismatch) != 1 {
		t.Fatalf("stats %+v, want one fallback at the deliver stage", st)
	}
	// The next client starts a new backend and is handed off to it.
	eventually(t, 10*time.Second, "the dead backend to be forgotten", func() bool {
		return len(h.b.sup.snapshot()) == 0
	})
	c2, err := h.rawDial("echo", dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	echoes(t, c2, "a new backend")
	if pid := h.backendPID("echo"); pid == first {
		t.Fatalf("served by pid %d, the backend that was killed", pid)
	}
}

func TestWindowsDeliverFailsHandleReclaimed(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("echo", "echo", "")
	h.warm("echo")
	var once sync.Once
	setTransferHook(t, func(pid int) {
		once.Do(func() {
			// The broker's end of the control connection goes away between
			// the duplication and the offer: the offer cannot be sent, the
			// backend never learns the handle's value.
			h.b.sup.mu.Lock()
			p := h.b.sup.byPID[pid]
			h.b.sup.mu.Unlock()
			p.control().conn.Close()
		})
	})
	c, err := h.rawDial("echo", dialOpts{readyTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// EOF at once: the broker closed the duplicate inside the live backend,
	// then its own copy. A handle left there would keep the client waiting.
	if c.route != "reconnect" || c.fellBack != "eof" {
		t.Fatalf("route %s after %q, want reconnect after EOF", c.route, c.fellBack)
	}
	echoes(t, c, "the backend lives on")
	h.settle()
	st := h.b.orch.Stats()
	if st.Reclaimed != 1 || st.Leaked != 0 {
		t.Fatalf("stats %+v, want one reclaimed handle and none leaked", st)
	}
	if v := h.metric("portier_handoff_handles_reclaimed_total", nil); v != 1 {
		t.Errorf("portier_handoff_handles_reclaimed_total = %v, want 1", v)
	}
	lines := h.fallbackLines()
	if len(lines) != 1 || !strings.Contains(lines[0], "reclaimed=true") || !strings.Contains(lines[0], "stage=deliver") {
		t.Fatalf("fallback log lines %q, want one at the deliver stage naming the reclaimed handle", lines)
	}
}

func TestWindowsImpostorRefused(t *testing.T) {
	h := newWinHarness(t, nil)
	envFile := filepath.Join(h.dir, "backend.env")
	h.define("echo", "tell-env", "", envOut+"="+envFile)
	h.warm("echo")
	data, err := os.ReadFile(envFile)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Another process of the same user, knowing everything the backend was
	// told, spawn secret included: it is still not the process the broker
	// started.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), strings.Split(string(data), "\n")...), roleEnv+"=impostor")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("impostor: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	want := "accepted=false code=ERROR_PEER_REJECTED reason=pid " + strconv.Itoa(cmd.Process.Pid) + " was not started by this broker"
	if got != want {
		t.Fatalf("impostor's registration: %q\nwant %q", got, want)
	}
	if v := h.metric("portier_backend_registrations_total", map[string]string{"result": "refused"}); v != 1 {
		t.Errorf("refused registrations = %v, want 1", v)
	}
	// The real backend still serves, by handoff.
	c, err := h.rawDial("echo", dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.route != "handoff" {
		t.Fatalf("route %s, want handoff", c.route)
	}
	echoes(t, c, "the real one")
}

func TestWindowsConcurrentHandoffs(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("echo", "echo", "")
	h.warm("echo")
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := h.rawDial("echo", dialOpts{early: []byte(fmt.Sprintf("early %02d;", i))})
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if c.route != "handoff" {
				errs <- fmt.Errorf("client %d: route %s (fell back: %s)", i, c.route, c.fellBack)
				return
			}
			msg := fmt.Sprintf("early %02d;client %d", i, i)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte(msg[len("early 00;"):])); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				errs <- fmt.Errorf("client %d: echo %q, %v; want %q", i, buf, err, msg)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h.settle()
	if st := h.b.orch.Stats(); st.Completed != n || st.TotalFallbacks() != 0 || st.Leaked != 0 {
		t.Fatalf("stats %+v, want %d completed handoffs", st, n)
	}
}

func TestWindowsListenFDsRefused(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("sa", "echo", "activation = \"listen-fds\"\n")
	_, err := h.rawDial("sa", dialOpts{})
	if err == nil || !strings.Contains(err.Error(), "ERROR_BACKEND_SPAWN_FAILED") || !strings.Contains(err.Error(), "listen-fds") {
		t.Fatalf("dial a listen-fds service: %v, want BACKEND_SPAWN_FAILED naming listen-fds", err)
	}
}

func TestWindowsSingleton(t *testing.T) {
	h := newWinHarness(t, nil)
	b, err := New(Config{Socket: h.sock, ServicesDir: h.svcDir, StateDir: filepath.Join(h.dir, "state2")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(t.Context()); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second broker on %s: %v, want ErrAlreadyRunning", h.sock, err)
	}
}

// waitExit waits for the process behind h to exit.
func waitExit(t *testing.T, what string, h windows.Handle) {
	t.Helper()
	if ev, err := windows.WaitForSingleObject(h, 15_000); err != nil || ev != windows.WAIT_OBJECT_0 {
		t.Errorf("%s still runs (%d, %v)", what, ev, err)
	}
}

func TestWindowsStopKillsJobTree(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	h := newWinHarness(t, func(c *Config) { c.ShutdownGrace = time.Second })
	h.define("stub", "stubborn", "", envOut+"="+pidFile)
	h.warm("stub")
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(string(data))
	var hs []windows.Handle
	for _, pid := range []int{h.backendPID("stub"), child} {
		ph, err := windows.OpenProcess(windows.SYNCHRONIZE, false, uint32(pid))
		if err != nil {
			t.Fatalf("open %d: %v", pid, err)
		}
		defer windows.CloseHandle(ph)
		hs = append(hs, ph)
	}
	// The backend ignores the quiesce; after ShutdownGrace the broker
	// kills its job, the child it started included.
	h.close()
	waitExit(t, "the backend", hs[0])
	waitExit(t, "the backend's child", hs[1])
}

func TestWindowsBrokerRestartReadopts(t *testing.T) {
	h := newWinHarness(t, func(c *Config) { c.StopBackendsOnExit = false })
	h.define("echo", "echo", "")
	h.warm("echo")
	pid := h.backendPID("echo")
	// A handed-off connection outlives the broker: the backend holds its
	// pipe instance, which keeps the broker's pipe name alive.
	held, err := h.rawDial("echo", dialOpts{})
	if err != nil || held.route != "handoff" {
		t.Fatalf("dial: %+v, %v; want a handoff", held, err)
	}
	defer held.Close()
	cfg := h.b.cfg
	h.close()
	echoes(t, held, "the broker is gone, the connection is not")

	// The next broker takes the pipe despite that instance, finds the
	// backend in the state file and, once it re-registered and proved its
	// identity, duplicates handles into it again.
	cfg.StopBackendsOnExit = true
	cfg.Logger = h.b.log
	h.start(cfg)
	eventually(t, 10*time.Second, "the backend to re-register", func() bool {
		for _, p := range h.b.sup.snapshot() {
			if p.pid == pid && p.control() != nil {
				return true
			}
		}
		return false
	})
	c, err := h.rawDial("echo", dialOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.route != "handoff" {
		t.Fatalf("route %s (fell back: %s), want a handoff to the re-adopted backend", c.route, c.fellBack)
	}
	echoes(t, c, "re-adopted")
	if got := h.backendPID("echo"); got != pid {
		t.Fatalf("served by pid %d, want the re-adopted %d", got, pid)
	}
	// Stopped, the backend quiesces and exits; the broker's watch on its
	// process (it is not the broker's child) sees that at once.
	c.Close()
	h.close()
	if !strings.Contains(h.logs.String(), `status="re-adopted backend exited"`) {
		t.Errorf("the re-adopted backend's exit was not seen by its exit watch:\n%s", h.logs.String())
	}
}

// eventually polls cond until it holds or d passes; only for state another
// process changes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestWindowsHelloLimits: the first frame on the broker's pipe is read as
// on Unix: capped at 64 KiB, under the Hello deadline, and checked against
// the pid the kernel reports for the pipe's client.
func TestWindowsHelloLimits(t *testing.T) {
	h := newWinHarness(t, func(c *Config) { c.HelloTimeout = 300 * time.Millisecond })
	h.define("echo", "echo", "")
	// send writes raw bytes as a new client and returns the broker's
	// answer: "negotiated", a refusal's code and reason, or "" for a close
	// without an answer.
	send := func(t *testing.T, raw []byte) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := ipc.DialPipe(ctx, h.sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if len(raw) > 0 {
			if _, err := c.Write(raw); err != nil {
				t.Fatal(err)
			}
		}
		rf, err := wire.ReadFrame(c, wire.MaxBody)
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			t.Fatalf("read the answer: %v", err)
		}
		hr, err := wire.DecodeHelloReply(rf.GetPayload())
		switch {
		case err != nil:
			t.Fatalf("answer: %v", err)
		case hr.GetNegotiated() != nil:
			return "negotiated"
		}
		return hr.GetRefused().GetCode().String() + ": " + hr.GetRefused().GetReason()
	}
	hello := func(peerPID uint32) []byte {
		f, err := wire.NewRequest(wire.ProtocolControl, 1, &pb.Hello{
			ClientMinProtocol: wire.ProtocolVersion, ClientMaxProtocol: wire.ProtocolVersion,
			ServiceName: "echo", WantedVersion: "1.0.0", PeerPid: peerPID,
		})
		if err != nil {
			t.Fatal(err)
		}
		b, err := wire.EncodeFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("over the cap", func(t *testing.T) {
		hdr := []byte{0x01, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(hdr[1:], wire.MaxHelloBody+1)
		if got := send(t, hdr); !strings.HasPrefix(got, "ERROR_PEER_REJECTED: ") || !strings.Contains(got, "Hello cap") {
			t.Fatalf("answer %q, want PEER_REJECTED for a first frame over the cap", got)
		}
	})
	t.Run("stalled partial frame", func(t *testing.T) {
		if got := send(t, hello(0)[:7]); !strings.Contains(got, "incomplete Hello frame: 7 bytes in 300ms") {
			t.Fatalf("answer %q, want an incomplete Hello at the deadline", got)
		}
	})
	t.Run("silent peer", func(t *testing.T) {
		if got := send(t, nil); got != "" {
			t.Fatalf("answer %q, want the connection closed without one", got)
		}
	})
	t.Run("self-reported pid is another", func(t *testing.T) {
		if got := send(t, hello(uint32(os.Getpid())+4)); !strings.HasPrefix(got, "ERROR_PEER_REJECTED: ") || !strings.Contains(got, "peer_pid") {
			t.Fatalf("answer %q, want PEER_REJECTED naming peer_pid", got)
		}
	})
	t.Run("self-reported pid is the kernel's", func(t *testing.T) {
		if got := send(t, hello(uint32(os.Getpid()))); got != "negotiated" {
			t.Fatalf("answer %q, want Negotiated", got)
		}
	})
}

// TestWindowsSpawnFailure: a backend that exits before registering is
// refused BACKEND_SPAWN_FAILED with its exit status and the end of what it
// wrote to stderr, which the broker captured in its log file.
func TestWindowsSpawnFailure(t *testing.T) {
	h := newWinHarness(t, nil)
	h.define("broken", "fail", "")
	_, err := h.rawDial("broken", dialOpts{})
	var re *refusedError
	if !errors.As(err, &re) || re.r.GetCode() != pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED {
		t.Fatalf("dial: %v, want BACKEND_SPAWN_FAILED", err)
	}
	d := re.r.GetDetails()
	if !strings.Contains(d["stderr_tail"], "fatal: the database file is locked") || d["exit_status"] != "exit status 1" {
		t.Fatalf("details %v, want the backend's last stderr line and its exit status", d)
	}
	if want := filepath.Join(h.dir, "state", "logs", "broken-1.0.0.log"); d["log"] != want {
		t.Fatalf("log %q, want %q", d["log"], want)
	}
}

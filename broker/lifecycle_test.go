//go:build unix

package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Broker lifecycle: brokers run as separate processes (the "broker" role,
// default Config, so backends outlive them), killed, restarted, raced;
// activation and idle quiesce.

// newProcHarness lays out a broker directory without an in-process broker;
// start brokers with startBrokerProc. h.dial and h.define work as usual.
func newProcHarness(t *testing.T) *harness {
	t.Helper()
	dir := shortTempDir(t)
	h := &harness{t: t, dir: dir, sock: filepath.Join(dir, "run", "broker.sock"), svcDir: filepath.Join(dir, "svc")}
	if err := os.Mkdir(h.svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	return h
}

// brokerProc is a broker running in a helper process.
type brokerProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's result, valid after done
}

func startBrokerProc(t *testing.T, h *harness) *brokerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.CreateTemp(h.dir, "broker-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=broker", "PORTIER_TEST_SOCKET="+h.sock, "PORTIER_TEST_SERVICES="+h.svcDir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &brokerProc{cmd: cmd, log: logf.Name(), done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			out, _ := os.ReadFile(p.log)
			t.Logf("broker pid %d log:\n%s", cmd.Process.Pid, out)
		}
	})
	return p
}

func (p *brokerProc) pid() int { return p.cmd.Process.Pid }

// waitExit waits up to d for the process to exit and returns its exit code
// (-1 for a signal).
func (p *brokerProc) waitExit(d time.Duration) (code int, exited bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-t.C:
		return 0, false
	}
}

func (p *brokerProc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// adminStatus asks the broker on sock for its status.
func adminStatus(sock string) (*pb.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := ipc.Dial(ctx, sock)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	f, err := wire.NewRequest(wire.ProtocolAdmin, 1, &pb.AdminRequest{Verb: &pb.AdminRequest_Status{Status: &pb.StatusRequest{}}})
	if err != nil {
		return nil, err
	}
	if err := wire.WriteFrame(c, f); err != nil {
		return nil, err
	}
	rf, err := wire.ReadFrame(c, wire.MaxBody)
	if err != nil {
		return nil, err
	}
	resp := new(pb.AdminResponse)
	if err := proto.Unmarshal(rf.GetPayload(), resp); err != nil {
		return nil, err
	}
	if resp.GetStatus() == nil {
		return nil, fmt.Errorf("admin reply without status: %v", resp)
	}
	return resp.GetStatus(), nil
}

func mustStatus(t *testing.T, sock string) *pb.Status {
	t.Helper()
	st, err := adminStatus(sock)
	if err != nil {
		t.Fatalf("admin status: %v", err)
	}
	return st
}

// killGroupAtCleanup kills a backend's process group when the test ends:
// backends outlive a broker that is killed or terminated.
func killGroupAtCleanup(t *testing.T, pid int) {
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
}

// servedBackend dials service through h and returns the status of the one
// backend serving it.
func servedBackend(t *testing.T, h *harness, service string) *pb.BackendStatus {
	t.Helper()
	c, err := h.dial(service)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "first")
	c.Close()
	st := mustStatus(t, h.sock)
	if len(st.GetBackends()) != 1 {
		t.Fatalf("backends = %v, want one", st.GetBackends())
	}
	be := st.GetBackends()[0]
	killGroupAtCleanup(t, int(be.GetPid()))
	return be
}

func TestBrokerSIGKILLRestartReadoptsLiveBackend(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	first := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")
	pid := be.GetPid()

	// The broker records a registered backend in its state file right
	// after registration; kill it only once the record is there.
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

	killed := time.Now()
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := first.waitExit(10 * time.Second); !ok {
		t.Fatal("SIGKILLed broker still running")
	}
	restarted := time.Now()
	second := startBrokerProc(t, h)
	var listening time.Time
	eventually(t, 10*time.Second, "the backend to re-register", func() bool {
		st, err := adminStatus(h.sock)
		if err != nil {
			return false
		}
		if listening.IsZero() {
			listening = time.Now()
		}
		for _, b := range st.GetBackends() {
			if b.GetPid() == pid && b.GetState() == "registered" {
				return true
			}
		}
		return false
	})
	registered := time.Now()
	t.Logf("re-registration: %s after SIGKILL, %s after the new broker was started, %s after it answered",
		registered.Sub(killed).Round(time.Millisecond), registered.Sub(restarted).Round(time.Millisecond),
		registered.Sub(listening).Round(time.Millisecond))
	if d := registered.Sub(restarted); d > time.Second {
		t.Errorf("backend re-registered %s after the broker restarted; want within 1s", d)
	}

	st := mustStatus(t, h.sock)
	if st.GetBrokerPid() != uint32(second.pid()) {
		t.Fatalf("status from broker pid %d, want the new broker %d", st.GetBrokerPid(), second.pid())
	}
	if len(st.GetBackends()) != 1 || st.GetBackends()[0].GetPid() != pid {
		t.Fatalf("backends after restart = %v, want only the re-adopted pid %d", st.GetBackends(), pid)
	}
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	if c.Route() != client.Handoff {
		t.Fatalf("route after restart = %s, want handoff to the re-adopted backend", c.Route())
	}
	echo(t, c, "after restart")
	c.Close()
	if strings.Contains(second.logText(), "backend started") {
		t.Fatal("the restarted broker spawned a second backend")
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := second.waitExit(10 * time.Second); !ok || code != 0 {
		t.Fatalf("restarted broker after SIGTERM: exited=%t code=%d", ok, code)
	}
}

func TestBrokerSIGTERMExitsZeroLeavingBackends(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	p := startBrokerProc(t, h)
	h.waitListening()
	be := servedBackend(t, h, "echo")

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := p.waitExit(5 * time.Second)
	if !ok {
		t.Fatal("broker still running 5s after SIGTERM")
	}
	if code != 0 {
		t.Fatalf("broker exit status %d after SIGTERM, want 0", code)
	}
	// The default configuration leaves backends running for the next
	// broker: this one still serves its own endpoint.
	c, err := ipc.Dial(context.Background(), be.GetEndpoint())
	if err != nil {
		t.Fatalf("backend pid %d after the broker exited: %v", be.GetPid(), err)
	}
	echo(t, c, "still here")
	c.Close()
}

func TestConcurrentBrokersLeaveExactlyOne(t *testing.T) {
	t.Parallel()
	h := newProcHarness(t)
	const n = 5
	exits := make(chan *brokerProc, n)
	procs := make([]*brokerProc, n)
	for i := range procs {
		procs[i] = startBrokerProc(t, h)
	}
	for _, p := range procs {
		go func() { <-p.done; exits <- p }()
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	lost := make(map[*brokerProc]bool)
	for len(lost) < n-1 {
		select {
		case p := <-exits:
			lost[p] = true
			if code := p.cmd.ProcessState.ExitCode(); code != exitAlreadyRunning {
				t.Fatalf("broker pid %d exited %d, want %d (ErrAlreadyRunning):\n%s", p.pid(), code, exitAlreadyRunning, p.logText())
			}
		case <-deadline.C:
			t.Fatalf("%d of %d brokers exited within 30s; want %d", len(lost), n, n-1)
		}
	}
	var winner *brokerProc
	for _, p := range procs {
		if !lost[p] {
			winner = p
		}
	}
	h.waitListening()
	if st := mustStatus(t, h.sock); st.GetBrokerPid() != uint32(winner.pid()) {
		t.Fatalf("socket served by pid %d, want the surviving broker %d", st.GetBrokerPid(), winner.pid())
	}
	select {
	case p := <-exits:
		t.Fatalf("the last broker (pid %d) exited too: %v", p.pid(), p.err)
	default:
	}
	if err := winner.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, ok := winner.waitExit(10 * time.Second); !ok || code != 0 {
		t.Fatalf("surviving broker after SIGTERM: exited=%t code=%d", ok, code)
	}
}

// socketInodes returns the inodes of the Unix sockets bound to path, from
// /proc/net/unix.
func socketInodes(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		t.Skip("no /proc/net/unix")
	}
	defer f.Close()
	var inodes []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode Path
		fields := strings.Fields(sc.Text())
		if len(fields) >= 8 && fields[7] == path {
			inodes = append(inodes, fields[6])
		}
	}
	return inodes
}

// holdsSocket reports whether this process has a descriptor for the socket
// with the given inode.
func holdsSocket(t *testing.T, inode string) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && l == "socket:["+inode+"]" {
			return true
		}
	}
	return false
}

func TestListenFDsActivationReconnectOnly(t *testing.T) {
	h := newHarness(t, nil)
	h.define("sockact", "1.0.0", "listen-fds", "activation = \"listen-fds\"\n")
	dial := func() {
		t.Helper()
		c, err := h.dial("sockact")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.Route() != client.Reconnect {
			t.Fatalf("route = %s, want reconnect", c.Route())
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("read the backend's status line: %v", err)
		}
		if line != "ok\n" {
			t.Fatalf("backend checked its activation environment: %s", line)
		}
		echo(t, c, "through the activated socket")
	}
	dial()
	be := h.onlyBackend()
	// The broker bound the socket and passed it; it must not keep a copy.
	inodes := socketInodes(t, be.GetEndpoint())
	if len(inodes) == 0 {
		t.Fatalf("no socket bound at %s", be.GetEndpoint())
	}
	for _, ino := range inodes {
		if holdsSocket(t, ino) {
			t.Fatalf("the broker still holds the activation socket %s (inode %s)", be.GetEndpoint(), ino)
		}
	}
	base := fdcount.Count(t)
	for i := 0; i < 5; i++ {
		dial()
	}
	if st := h.b.orch.Stats(); st.Attempts != 0 {
		t.Fatalf("handoff attempts = %d, want 0 for a listen-fds backend", st.Attempts)
	}
	if n := h.spawns("sockact", "started"); n != 1 {
		t.Fatalf("spawns = %d, want 1", n)
	}
	eventually(t, 5*time.Second, "broker fd count back to baseline", func() bool { return fdcount.Count(t) <= base })
}

func TestIdleBackendQuiescedThenRespawned(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "idle_timeout = \"1s\"\n")
	c, err := h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "before idling")
	c.Close()
	first := h.onlyBackend()
	h.b.sup.mu.Lock()
	p := h.b.sup.byPID[int(first.GetPid())]
	h.b.sup.mu.Unlock()
	if p == nil {
		t.Fatal("backend not in the supervisor's table")
	}
	// The janitor ticks every second; after 1s idle it asks the backend
	// to quiesce, and the backend closes its listener and exits.
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("idle backend still running after 20s")
	}
	c, err = h.dial("echo")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "after idling")
	c.Close()
	if n := h.spawns("echo", "started"); n != 2 {
		t.Fatalf("spawns = %d, want 2", n)
	}
	if second := h.onlyBackend(); second.GetPid() == first.GetPid() {
		t.Fatalf("same pid %d after the idle quiesce", first.GetPid())
	}
}

// TestStoppingBrokerAnswersQueuedClients: clients that connected while the
// broker could not accept them (it is stopped with SIGSTOP here, as a
// busy broker would leave them queued) and sent their Hello are answered
// when it then stops: SHUTTING_DOWN with a retry delay, or served if it
// took them before it began to stop; none is reset without a reply. After
// the broker is gone its socket is too, so a new client finds no broker.
func TestStoppingBrokerAnswersQueuedClients(t *testing.T) {
	const n = 256
	h := newProcHarness(t)
	h.define("echo", "1.0.0", "echo", "")
	p := startBrokerProc(t, h)
	eventually(t, 10*time.Second, "the broker to answer", func() bool { _, err := adminStatus(h.sock); return err == nil })
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	hello := rawHello(t, nil, nil)
	conns := make([]*net.UnixConn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.sock, Net: "unix"})
		if err != nil {
			t.Fatalf("connect %d to a stopped broker: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	served, refused := 0, 0
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		f, err := wire.ReadFrame(c, wire.MaxBody)
		if err != nil {
			t.Fatalf("queued client %d got no reply: %v", i, err)
		}
		hr := helloReplyOf(t, f)
		switch r := hr.GetRefused(); {
		case hr.GetNegotiated() != nil:
			served++
		case r.GetCode() == pb.ErrorCode_ERROR_SHUTTING_DOWN && r.GetRetryAfterMs() > 0:
			refused++
		default:
			t.Fatalf("queued client %d: %v, want Negotiated or SHUTTING_DOWN with a retry delay", i, hr)
		}
	}
	t.Logf("%d queued clients: %d served, %d refused SHUTTING_DOWN", n, served, refused)
	if code, ok := p.waitExit(10 * time.Second); !ok || code != 0 {
		t.Fatalf("broker after SIGTERM: exited=%t code=%d", ok, code)
	}
	if _, err := os.Lstat(h.sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stopped broker's socket: %v, want it removed", err)
	}
}

// TestStartCutShortByStop: a backend that could not register because the
// broker began to stop (its socket is gone) did not fail: the Hellos
// waiting for it are told SHUTTING_DOWN, with a retry delay, and nothing
// counts against the service's start budget or shows it as failing.
func TestStartCutShortByStop(t *testing.T) {
	h := newHarness(t, nil)
	h.define("echo", "1.0.0", "echo", "")
	def, err := h.b.defs.Lookup("echo")
	if err != nil {
		t.Fatal(err)
	}
	p, err := h.b.sup.newProc(def)
	if err != nil {
		t.Fatal(err)
	}
	h.b.shutting.Store(true) // as Serve does first when it stops
	h.b.sup.startFailed(p, h.b.log, "exited before registering: exit status 1", "exit status 1", "echo-1.0.0.log")
	var rf *refusal
	if !errors.As(p.readyErr, &rf) || rf.code != pb.ErrorCode_ERROR_SHUTTING_DOWN || rf.retryAfter <= 0 {
		t.Fatalf("waiting Hellos get %v, want SHUTTING_DOWN with a retry delay", p.readyErr)
	}
	if n := h.spawns("echo", "failed"); n != 0 {
		t.Errorf("failed spawns counted: %d", n)
	}
	if fs := h.b.sup.failureStatus(time.Now()); len(fs) != 0 {
		t.Errorf("status lists failing services: %v", fs)
	}
}

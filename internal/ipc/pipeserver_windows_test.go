package ipc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/portier/portier/internal/fdcount"
	"golang.org/x/sys/windows"
)

// checkHandles fails the test at cleanup if it left a handle of any kind
// open (fdcount.CheckHandles, warmed up with a pipe connection).
func checkHandles(t *testing.T) {
	t.Helper()
	fdcount.CheckHandles(t, warmUp)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// serve listens on a fresh pipe name and returns the listener (closed at
// cleanup) and the name.
func serve(t *testing.T) (*Listener, string) {
	t.Helper()
	name := pipeName(t)
	l, err := ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, name
}

// connect dials name and accepts the connection on l.
func connect(t *testing.T, l *Listener, name string) (client net.Conn, server *PipeConn) {
	t.Helper()
	ctx := testCtx(t)
	type res struct {
		c   *PipeConn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.AcceptPipe()
		ch <- res{c, err}
	}()
	client, err := DialPipe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		t.Fatal("AcceptPipe did not return")
	}
	if r.err != nil {
		_ = client.Close()
		t.Fatal(r.err)
	}
	deadline, _ := ctx.Deadline()
	_ = client.SetDeadline(deadline)
	return client, r.c
}

// pipeAvailable returns how many bytes are waiting in pipe h (PeekNamedPipe).
func pipeAvailable(t *testing.T, c *PipeConn) int {
	t.Helper()
	var avail uint32
	err := c.withHandle(func(h windows.Handle) error {
		r, _, err := procClientPeekPipe.Call(uintptr(h), 0, 0, 0, uintptr(unsafe.Pointer(&avail)), 0)
		if r == 0 {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("PeekNamedPipe: %v", err)
	}
	return int(avail)
}

// warmUp runs one whole connection through a listener so that the handles
// the runtime and go-winio open once (threads, the completion port) are
// open before a test counts handles.
func warmUp(t *testing.T) {
	t.Helper()
	name := pipeName(t) + "-warm"
	l, err := ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	c, s := connect(t, l, name)
	_ = c.Close()
	_ = s.Close()
	_ = l.Close()
}

// TestPipeConnExactRead is the broker's Hello read: the client pipelines
// bytes after a header, the server reads exactly the header, and the rest
// stays in the pipe (for the backend the instance will be handed to).
func TestPipeConnExactRead(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	l, name := serve(t)
	client, server := connect(t, l, name)
	defer client.Close()
	defer server.Close()

	const header, early = "HELLO", "pipelined early data"
	if _, err := client.Write([]byte(header + early)); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(header))
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != header {
		t.Fatalf("header: %q, %v", buf, err)
	}
	if n := pipeAvailable(t, server); n != len(early) {
		t.Fatalf("%d bytes left in the pipe after the header, want %d: the read took more than asked", n, len(early))
	}
	rest := make([]byte, len(early))
	if _, err := io.ReadFull(server, rest); err != nil || string(rest) != early {
		t.Fatalf("rest: %q, %v", rest, err)
	}
	_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := server.Write([]byte("reply")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(client, got); err != nil || string(got) != "reply" {
		t.Fatalf("client read %q, %v", got, err)
	}
	// A big write goes through the transfer buffer in chunks.
	big := []byte(strings.Repeat("0123456789abcdef", 6000))
	done := make(chan error, 1)
	go func() { _, err := server.Write(big); done <- err }()
	back := make([]byte, len(big))
	if _, err := io.ReadFull(client, back); err != nil || string(back) != string(big) {
		t.Fatalf("big write: %d bytes, %v", len(back), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The client leaves: EOF, and writes fail with EPIPE.
	_ = client.Close()
	if n, err := server.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after client close: %d, %v; want EOF", n, err)
	}
	if _, err := server.Write([]byte("gone")); !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("write after client close: %v; want EPIPE", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
	if err := server.SetReadDeadline(time.Time{}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("SetReadDeadline after Close: %v", err)
	}
}

// TestPipeConnReadDeadline: the deadline cancels the pending read
// (CancelIoEx), nothing is lost, and the connection stays usable; a
// deadline set or a Close from another goroutine interrupts a blocked read.
func TestPipeConnReadDeadline(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	l, name := serve(t)
	client, server := connect(t, l, name)
	defer client.Close()

	buf := make([]byte, 4)
	_ = server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := server.Read(buf)
	var ne net.Error
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %d, %v; want a timeout", n, err)
	}
	// Expired: fails at once, and keeps failing.
	if _, err := server.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second read past deadline: %v", err)
	}

	// Still usable once the deadline moves.
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read after timeout: %q, %v", buf, err)
	}

	// A deadline set while a read waits (no deadline) interrupts it.
	waiting := make(chan struct{}, 1)
	testHookWait = func(read bool) {
		if read {
			select {
			case waiting <- struct{}{}:
			default:
			}
		}
	}
	defer func() { testHookWait = nil }()
	_ = server.SetReadDeadline(time.Time{})
	res := make(chan error, 1)
	go func() { _, err := server.Read(buf); res <- err }()
	<-waiting
	_ = server.SetReadDeadline(time.Now())
	select {
	case err := <-res:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("interrupted read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SetReadDeadline did not interrupt the read")
	}

	// Close interrupts a blocked read too, and waits for it.
	_ = server.SetReadDeadline(time.Time{})
	go func() { _, err := server.Read(buf); res <- err }()
	<-waiting
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read interrupted by Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not interrupt the read")
	}
	// The client sees the end of the connection.
	if _, err := client.Read(buf); err == nil {
		t.Fatal("client read succeeded after server Close")
	}
}

// TestPipeConnWriteDeadline: a client that never reads cannot hold a write
// forever.
func TestPipeConnWriteDeadline(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	l, name := serve(t)
	client, server := connect(t, l, name)
	defer client.Close()
	defer server.Close()

	big := make([]byte, 4*pipeBufferSize)
	_ = server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := server.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) {
		t.Fatalf("write to a client that does not read: %d, %v; want a timeout", n, err)
	}
	// What the pipe took is there, in order, and the connection still works.
	_ = server.SetWriteDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = server.Write([]byte("end")) }()
	got := make([]byte, n+3)
	if _, err := io.ReadFull(client, got); err != nil || string(got[n:]) != "end" {
		t.Fatalf("client read %d bytes ending %q, %v", len(got), got[n:], err)
	}
}

// TestListenerCloseWithPendingConnects: Close cancels the pending
// ConnectNamedPipe calls, releases every instance, event and the mutex, and
// ends a blocked Accept; the goroutine leak check in TestMain covers the
// accept loop.
func TestListenerCloseWithPendingConnects(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	name := pipeName(t)
	l, err := ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() { _, err := l.Accept(); res <- err }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end Accept")
	}
	if err := l.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if stopped, err := l.StopNewClients(); stopped || !errors.Is(err, net.ErrClosed) {
		t.Errorf("StopNewClients after Close: %v, %v", stopped, err)
	}
	// No instance is left to connect to.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := DialPipe(ctx, name); err == nil {
		_ = c.Close()
		t.Fatal("dial succeeded after the listener closed")
	}
}

// TestStopNewClients: clients connected to instances nobody accepted yet
// are kept (Pending) and accepted after StopNewClients, which leaves no
// instance for a new client; Close afterwards leaks nothing.
func TestStopNewClients(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	name := pipeName(t)
	l, err := ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := testCtx(t)
	const queued = 2
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}()
	for range queued {
		c, err := DialPipe(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if stopped, err := l.StopNewClients(); !stopped || err != nil {
		t.Fatalf("StopNewClients: %v, %v", stopped, err)
	}
	if again, err := l.StopNewClients(); !again || err != nil {
		t.Fatalf("StopNewClients again: %v, %v", again, err)
	}
	dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	if c, err := DialPipe(dctx, name); err == nil {
		_ = c.Close()
		t.Fatal("a new client connected after StopNewClients")
	}
	for i := range queued {
		if pending, err := l.Pending(); !pending || err != nil {
			t.Fatalf("Pending with %d clients left to accept: %v, %v", queued-i, pending, err)
		}
		sc, err := l.AcceptPipe()
		if err != nil {
			t.Fatalf("accept queued client %d: %v", i, err)
		}
		// The accepted connection is the client's: bytes go through.
		if _, err := clients[i].Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		if _, err := io.ReadFull(sc, b[:]); err != nil {
			t.Fatalf("read from queued client %d: %v", i, err)
		}
		_ = sc.Close()
	}
	if pending, err := l.Pending(); pending || err != nil {
		t.Fatalf("Pending after the queue was taken: %v, %v", pending, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Pending(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Pending after Close: %v", err)
	}
}

// TestListenerBurst: more clients at once than pending instances all get
// served (DialPipe retries ERROR_PIPE_BUSY within its deadline).
func TestListenerBurst(t *testing.T) {
	warmUp(t)
	// One burst first, unchecked: this many goroutines blocked in pipe
	// calls at once bring runtime threads that never parked before to
	// park, and a thread's first park opens two events that stay (seen
	// as "leaked 2 (Event)" in about 1 run in 10). The checked burst then
	// shows what the listener itself leaves open.
	warm, warmName := serve(t)
	burst(t, warm, warmName)
	_ = warm.Close()
	checkHandles(t)
	l, name := serve(t)
	burst(t, l, name)
}

// burst has 4*pendingInstances clients dial name at once, each echoed by
// its own Accept on l.
func burst(t *testing.T, l *Listener, name string) {
	t.Helper()
	const clients = 4 * pendingInstances
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for i := range clients {
		wg.Go(func() {
			c, err := DialPipe(ctx, name)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			deadline, _ := ctx.Deadline()
			_ = c.SetDeadline(deadline)
			msg := fmt.Sprintf("client-%02d", i)
			if _, err := c.Write([]byte(msg)); err != nil {
				errs <- err
				return
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
				errs <- fmt.Errorf("echo %q: %q, %v", msg, got, err)
			}
		})
	}
	for range clients {
		wg.Go(func() {
			s, err := l.AcceptPipe()
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			deadline, _ := ctx.Deadline()
			_ = s.SetDeadline(deadline)
			buf := make([]byte, len("client-00"))
			if _, err := io.ReadFull(s, buf); err != nil {
				errs <- err
				return
			}
			if _, err := s.Write(buf); err != nil {
				errs <- err
				return
			}
			// Wait for the client to finish reading before closing.
			_, _ = s.Read(buf[:1])
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestListenSingletonPipe: a second listener is refused while the first
// holds the mutex; a pipe served by someone who does not take the mutex is
// found by the probe; after the first listener closes, a connection it
// accepted (as a handed-off instance held by a backend would) does not keep
// a new broker from listening, and new clients reach the new one.
func TestListenSingletonPipe(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	l, name := serve(t)
	if l2, err := ListenSingleton(name); !errors.Is(err, ErrAlreadyRunning) {
		if err == nil {
			_ = l2.Close()
		}
		t.Fatalf("second ListenSingleton: %v, want ErrAlreadyRunning", err)
	}
	if !strings.EqualFold(l.Path(), name) || l.Addr().String() != name || l.Addr().Network() != "pipe" {
		t.Errorf("Path %q Addr %v", l.Path(), l.Addr())
	}

	// The mutex alone keeps a second server out, even before the first
	// has created the pipe.
	sa, err := userOnlySecurityAttributes()
	if err != nil {
		t.Fatal(err)
	}
	other := name + "-mutex"
	m, err := acquireSingleton(other, sa)
	if err != nil {
		t.Fatal(err)
	}
	if l2, err := ListenSingleton(other); !errors.Is(err, ErrAlreadyRunning) {
		if err == nil {
			_ = l2.Close()
		}
		t.Fatalf("ListenSingleton while the mutex is held: %v, want ErrAlreadyRunning", err)
	}
	_ = windows.CloseHandle(m)
	l2, err := ListenSingleton(other)
	if err != nil {
		t.Fatalf("ListenSingleton after the mutex was released: %v", err)
	}
	_ = l2.Close()

	client, held := connect(t, l, name)
	defer client.Close()
	defer held.Close()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l3, err := ListenSingleton(name)
	if err != nil {
		t.Fatalf("ListenSingleton with a held instance but no server: %v", err)
	}
	defer l3.Close()
	c2, s2 := connect(t, l3, name)
	defer c2.Close()
	defer s2.Close()
	// The held connection is untouched by all this.
	_ = held.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(held, buf); err != nil || string(buf) != "still" {
		t.Fatalf("held connection: %q, %v", buf, err)
	}
}

// TestListenSingletonProbe: a live server on the pipe that does not hold
// the mutex (an older portier, or anything else) is found by the probe.
func TestListenSingletonProbe(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	name := pipeName(t)
	other, err := ListenPipe(name) // go-winio, no mutex
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	if l, err := ListenSingleton(name); !errors.Is(err, ErrAlreadyRunning) {
		if err == nil {
			_ = l.Close()
		}
		t.Fatalf("ListenSingleton over a live server: %v, want ErrAlreadyRunning", err)
	}
	// The mutex was released on that failure.
	_ = other.Close()
	l, err := ListenSingleton(name)
	if err != nil {
		t.Fatalf("ListenSingleton after the other server left: %v", err)
	}
	_ = l.Close()
}

// TestListenSingletonRace: several processes race for the same pipe; one
// wins, the others are told it is already running.
func TestListenSingletonRace(t *testing.T) {
	name := pipeName(t)
	const n = 4
	type child struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var children []child
	for range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"=singleton", "PORTIER_IPC_TEST_PATH="+name)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		children = append(children, child{cmd, stdin, bufio.NewReader(stdout)})
	}
	defer func() {
		for _, c := range children {
			_ = c.stdin.Close()
			_ = c.cmd.Wait()
		}
	}()
	for _, c := range children {
		if _, err := c.stdin.Write([]byte("g")); err != nil {
			t.Fatal(err)
		}
	}
	ok := 0
	for _, c := range children {
		line, err := c.out.ReadString('\n')
		switch line = strings.TrimSpace(line); {
		case err != nil:
			t.Fatalf("child: %q, %v", line, err)
		case line == "ok":
			ok++
		case line != "already":
			t.Fatalf("child: %s", line)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d processes got the pipe, want exactly 1", ok, n)
	}
}

// TestCheckPeerPipe: both ends identify the other as this user, the pid is
// this process, and nothing is read from the pipe.
func TestCheckPeerPipe(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	l, name := serve(t)
	client, server := connect(t, l, name)
	defer client.Close()
	defer server.Close()
	if _, err := client.Write([]byte("unread")); err != nil {
		t.Fatal(err)
	}
	cred, err := CheckPeer(server, RealUID)
	if err != nil || cred.PID != os.Getpid() || cred.UID != -1 {
		t.Fatalf("CheckPeer(server end) = %+v, %v; want pid %d", cred, err, os.Getpid())
	}
	if cp, err := server.ClientPID(); err != nil || cp != os.Getpid() {
		t.Fatalf("ClientPID = %d, %v", cp, err)
	}
	cred, err = CheckPeer(client, EffectiveUID)
	if err != nil || cred.PID != os.Getpid() {
		t.Fatalf("CheckPeer(client end) = %+v, %v; want pid %d", cred, err, os.Getpid())
	}
	if n := pipeAvailable(t, server); n != len("unread") {
		t.Fatalf("%d bytes in the pipe after CheckPeer, want %d", n, len("unread"))
	}
	if _, err := CheckPeer(&net.TCPConn{}, RealUID); err == nil {
		t.Fatal("CheckPeer accepted a non-pipe connection")
	}
	// PeerGuard, the servers' form, admits the same.
	if cred, ok := NewPeerGuard(nil).Admit(server); !ok || cred.PID != os.Getpid() {
		t.Fatalf("PeerGuard.Admit = %+v, %v", cred, ok)
	}
}

// TestCheckPeerPipeProcesses: across processes each end names the other.
func TestCheckPeerPipeProcesses(t *testing.T) {
	l, name := serve(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=dial", "PORTIER_IPC_TEST_PATH="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cred, err := CheckPeer(s, RealUID); err != nil || cred.PID != cmd.Process.Pid {
		t.Fatalf("CheckPeer(server end) = %+v, %v; want the child, %d", cred, err, cmd.Process.Pid)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if want := fmt.Sprintf("server %d\n", os.Getpid()); err != nil || line != want {
		t.Fatalf("child says %q, %v; want %q", line, err, want)
	}
}

// TestSameSID covers the comparison CheckPeer makes with a SID that is not
// ours. (A process of another user cannot be made under Wine, which runs
// everything as one user; see docs/TESTING.md.)
func TestSameSID(t *testing.T) {
	self, err := currentUserSID()
	if err != nil {
		t.Fatal(err)
	}
	if err := sameSID(self, self); err != nil {
		t.Fatalf("own SID: %v", err)
	}
	system, err := windows.CreateWellKnownSid(windows.WinLocalSystemSid)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameSID(system, self); !errors.Is(err, ErrForeignPeer) || !strings.Contains(err.Error(), "S-1-5-18") {
		t.Fatalf("LocalSystem: %v, want ErrForeignPeer naming S-1-5-18", err)
	}
	if err := sameSID(nil, self); !errors.Is(err, ErrForeignPeer) {
		t.Fatalf("no SID: %v", err)
	}
}

// TestProcessHandle: the handle kept from spawn names the started process
// for good; re-opening by pid is accepted only with the recorded start time.
func TestProcessHandle(t *testing.T) {
	warmUp(t)
	checkHandles(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=wait")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	p, err := HoldProcess(cmd.Process)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	st, err := ProcessStartTime(cmd.Process.Pid)
	if err != nil || st != p.StartTime() || p.PID() != cmd.Process.Pid {
		t.Fatalf("start time %d (%v), handle says pid %d start %d", st, err, p.PID(), p.StartTime())
	}
	if exe, err := p.ExecutablePath(); err != nil || !strings.HasSuffix(strings.ToLower(exe), ".exe") {
		t.Errorf("ExecutablePath = %q, %v", exe, err)
	}
	if exited, err := p.Exited(); err != nil || exited {
		t.Fatalf("Exited = %v, %v while running", exited, err)
	}

	again, err := OpenProcessHandle(cmd.Process.Pid, st)
	if err != nil {
		t.Fatalf("OpenProcessHandle with the right start time: %v", err)
	}
	_ = again.Close()
	if h, err := OpenProcessHandle(cmd.Process.Pid, st+1); !errors.Is(err, ErrNoProcess) {
		if err == nil {
			_ = h.Close()
		}
		t.Fatalf("OpenProcessHandle with another start time: %v, want ErrNoProcess", err)
	}

	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	// The process is gone, its handle still names it.
	if exited, err := p.Exited(); err != nil || !exited {
		t.Fatalf("Exited = %v, %v after exit", exited, err)
	}
	if st2, err := processStartTimeOf(p); err != nil || st2 != st {
		t.Fatalf("start time through the handle after exit: %d, %v", st2, err)
	}
	if _, err := HoldProcess(cmd.Process); err == nil {
		t.Error("HoldProcess after Wait succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.WithHandle(func(windows.Handle) error { return nil }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WithHandle after Close: %v", err)
	}
	if _, err := OpenProcessHandle(0, 0); err == nil {
		t.Error("pid 0 accepted")
	}
}

func processStartTimeOf(p *ProcessHandle) (uint64, error) {
	var st uint64
	err := p.WithHandle(func(h windows.Handle) error {
		var err error
		st, err = processStartTime(h, p.PID())
		return err
	})
	return st, err
}

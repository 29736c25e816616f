package fdpass

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
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/portier/portier/internal/fdcount"
	"github.com/portier/portier/internal/ipc"
)

// checkHandles fails the test at cleanup if this process has more (or
// fewer) handles open than now (fdcount.CheckHandles, warmed up with a pipe
// connection). Children must have been waited for by then.
func checkHandles(t *testing.T) {
	t.Helper()
	fdcount.CheckHandles(t, warmPipes)
}

// warmPipes runs one pipe connection, so that go-winio's completion port
// (opened once per process) is open before handles are counted, and its
// completion goroutine has work.
func warmPipes(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := pipeName(t) + "-warm-pipes"
	l, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, ctx, name)
	defer c.Close()
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
}

// child is a re-executed test binary in a helper mode, with the process
// handle kept from spawn.
type child struct {
	cmd    *exec.Cmd
	proc   *ipc.ProcessHandle
	stdin  io.WriteCloser
	stdout *bufio.Reader
	waited bool
}

func startChild(t *testing.T, mode string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
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
	c := &child{cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	c.proc, err = ipc.HoldProcess(cmd.Process)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !c.waited {
			_ = c.cmd.Process.Kill()
			_ = c.wait()
		}
		_ = c.proc.Close()
	})
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	l, err := c.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("child output: %q, %v", l, err)
	}
	return strings.TrimSpace(l)
}

func (c *child) send(t *testing.T, v uint64) {
	t.Helper()
	if _, err := fmt.Fprintf(c.stdin, "%d\n", v); err != nil {
		t.Fatal(err)
	}
}

func (c *child) wait() error {
	c.waited = true
	_ = c.stdin.Close()
	return c.cmd.Wait()
}

// duplicateConn duplicates the handle of conn (a *ipc.PipeConn, or any conn
// with a side-effect-free Fd) into the child, through the process handle
// kept from spawn.
func (c *child) duplicateConn(t *testing.T, conn net.Conn) uint64 {
	t.Helper()
	var v uint64
	err := c.proc.WithHandle(func(target windows.Handle) error {
		if pc, ok := conn.(*ipc.PipeConn); ok {
			return WithHandle(pc, func(h windows.Handle) error {
				var err error
				v, err = DuplicateIntoProcess(target, h)
				return err
			})
		}
		var err error
		v, err = DuplicateIntoProcess(target, windows.Handle(conn.(interface{ Fd() uintptr }).Fd()))
		return err
	})
	if err != nil {
		t.Fatalf("DuplicateIntoProcess: %v", err)
	}
	return v
}

func dial(t *testing.T, ctx context.Context, name string) net.Conn {
	t.Helper()
	c, err := ipc.DialPipe(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	return c
}

func readString(t *testing.T, r io.Reader, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %q, %v", n, b, err)
	}
	return string(b)
}

func pipeName(t *testing.T) string {
	return fmt.Sprintf(`\\.\pipe\portier-fdpass-test-%d-%s`, os.Getpid(), strings.ReplaceAll(t.Name(), "/", "-"))
}

// TestHandoffThroughPipeServer is the Windows handoff with real processes:
// the client pipelines early data after its hello; the server (the
// broker's pipe listener, which never binds an instance to a completion
// port) reads exactly the hello, checks the peer, duplicates the instance
// into the child through the process handle kept from spawn and closes its
// own copy; the child adopts it with ConnFromHandle (binding it to its own
// completion port, with working deadlines), finds the early data, and
// serves the client on the same connection. Meanwhile the listener closes
// and a new one takes the pipe name although the child holds an instance.
func TestHandoffThroughPipeServer(t *testing.T) {
	handoffOnce(t, pipeName(t)+"-warm") // whatever is opened once per process, before counting
	checkHandles(t)
	handoffOnce(t, pipeName(t))
}

func handoffOnce(t *testing.T, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	backend := startChild(t, "adopt")

	client := dial(t, ctx, name)
	defer client.Close()
	if _, err := client.Write([]byte(helloBytes + earlyData)); err != nil {
		t.Fatal(err)
	}
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cred, err := ipc.CheckPeer(s, ipc.RealUID); err != nil || cred.PID != os.Getpid() {
		t.Fatalf("CheckPeer = %+v, %v", cred, err)
	}
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readString(t, s, len(helloBytes)); got != helloBytes {
		t.Fatalf("hello %q", got)
	}
	v := backend.duplicateConn(t, s)
	if err := s.Close(); err != nil { // the broker's copy goes before the child even knows
		t.Fatal(err)
	}

	// The broker restarts while the backend holds the instance.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatalf("new broker while a backend holds a handed-off instance: %v", err)
	}
	defer l2.Close()

	backend.send(t, v)
	if got := backend.line(t); got != "adopted" {
		t.Fatalf("child: %s", got)
	}
	if got := readString(t, client, len("ready")); got != "ready" {
		t.Fatalf("client got %q, want ready", got)
	}
	if got := readString(t, client, len("echo:"+earlyData)); got != "echo:"+earlyData {
		t.Fatalf("client got %q", got)
	}
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, client, 4); got != "pong" {
		t.Fatalf("client got %q, want pong", got)
	}
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read after the backend closed: %d, %v; want EOF", n, err)
	}
	if err := backend.wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
}

// TestAdoptRefusesInstanceOnCompletionPort shows the trap the pipe server
// avoids: an instance accepted through go-winio is bound to this process's
// completion port, its duplicate in the child shares the file object, and
// the child cannot bind it to its own port. ConnFromHandle reports that and
// closes the handle.
func TestAdoptRefusesInstanceOnCompletionPort(t *testing.T) {
	checkHandles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := pipeName(t)
	l, err := ipc.ListenPipe(name) // go-winio: Accept binds every instance
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	backend := startChild(t, "adopt")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client := dial(t, ctx, name)
	defer client.Close()
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	defer s.Close()
	backend.send(t, backend.duplicateConn(t, s))
	if got := backend.line(t); !strings.HasPrefix(got, "adopt-error: not-adoptable closed") {
		t.Fatalf("child adopting an instance bound to the parent's completion port: %s", got)
	}
	if err := backend.wait(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseInProcess: a handle duplicated into a child that never touched
// it is reclaimed: the value no longer names the pipe in the child, and
// with no server handle left anywhere the client sees the end of the pipe.
func TestCloseInProcess(t *testing.T) {
	checkHandles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := pipeName(t)
	l, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	idle := startChild(t, "idle")
	if got := idle.line(t); got != "ready" {
		t.Fatalf("child: %s", got)
	}
	client := dial(t, ctx, name)
	defer client.Close()
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	v := idle.duplicateConn(t, s)
	_ = s.Close() // the child's copy is the only server handle left
	err = idle.proc.WithHandle(func(h windows.Handle) error {
		if !isPipeIn(h, v) {
			t.Errorf("handle %#x is not a pipe in the child after the duplication", v)
		}
		if err := CloseInProcess(h, v); err != nil {
			return err
		}
		if isPipeIn(h, v) {
			t.Errorf("handle %#x still a pipe in the child after the reclaim", v)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("CloseInProcess: %v", err)
	}
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read after the reclaim: %d, %v; want end of pipe", n, err)
	}
	if err := idle.wait(); err != nil {
		t.Fatal(err)
	}
}

// isPipeIn reports whether handle value v in process p is a pipe (its
// count cannot tell: the child's runtime opens handles of its own).
func isPipeIn(p windows.Handle, v uint64) bool {
	var local windows.Handle
	if windows.DuplicateHandle(p, windows.Handle(v), windows.CurrentProcess(), &local, 0, false, windows.DUPLICATE_SAME_ACCESS) != nil {
		return false
	}
	defer windows.CloseHandle(local)
	t, err := windows.GetFileType(local)
	return err == nil && t == windows.FILE_TYPE_PIPE
}

// TestDuplicateIntoProcessErrors: the classes a broker maps failures by.
func TestDuplicateIntoProcessErrors(t *testing.T) {
	checkHandles(t)
	name := pipeName(t)
	l, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := dial(t, ctx, name)
	defer client.Close()
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// A stale handle value: integrity, not permission.
	_, err = DuplicateIntoProcess(windows.CurrentProcess(), windows.Handle(0x7ffffff0))
	if !errors.Is(err, ErrDuplicateFailed) || !errors.Is(err, ErrInvalidHandle) || errors.Is(err, ErrAccessDenied) {
		t.Errorf("bad source handle: %v", err)
	}
	// A target that exited: not a permission problem either.
	gone := startChild(t, "idle")
	if got := gone.line(t); got != "ready" {
		t.Fatalf("child: %s", got)
	}
	if err := gone.wait(); err != nil {
		t.Fatal(err)
	}
	err = gone.proc.WithHandle(func(target windows.Handle) error {
		return WithHandle(s, func(h windows.Handle) error {
			_, err := DuplicateIntoProcess(target, h)
			return err
		})
	})
	var de *Error
	if !errors.Is(err, ErrTargetExited) || errors.Is(err, ErrAccessDenied) || !errors.As(err, &de) || de.PID != uint32(gone.cmd.Process.Pid) {
		t.Errorf("duplicate into an exited process: %v", err)
	}
	if err := gone.proc.WithHandle(func(target windows.Handle) error { return CloseInProcess(target, 4) }); !errors.Is(err, ErrDuplicateFailed) {
		t.Errorf("CloseInProcess in an exited process: %v", err)
	}
}

// TestConnFromHandleRefuses: anything but an overlapped server end of a
// named pipe is refused, and the handle is closed every time.
func TestConnFromHandleRefuses(t *testing.T) {
	checkHandles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := pipeName(t) + "-srv" // pipePair takes pipeName(t)
	l, err := ipc.ListenSingleton(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client := dial(t, ctx, name)
	defer client.Close()
	s, err := l.AcceptPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	dup := func(h windows.Handle) windows.Handle {
		t.Helper()
		var out windows.Handle
		self := windows.CurrentProcess()
		if err := windows.DuplicateHandle(self, h, self, &out, 0, false, windows.DUPLICATE_SAME_ACCESS); err != nil {
			t.Fatal(err)
		}
		return out
	}
	// A refused handle must be closed. Its value may already name another
	// object (the runtime reuses values at once), so "closed" is checked as
	// "no longer a file of that type", and nothing is ever closed here.
	mustBeClosed := func(h windows.Handle, kind uint32) {
		t.Helper()
		if ft, err := windows.GetFileType(h); err == nil && ft == kind {
			t.Errorf("handle %#x still open after a refused ConnFromHandle", h)
		}
	}

	// The client end of a pipe.
	h := dup(windows.Handle(client.(interface{ Fd() uintptr }).Fd()))
	if _, err := ConnFromHandle(h); !errors.Is(err, ErrNotPipeServer) {
		t.Errorf("client end: %v", err)
	}
	mustBeClosed(h, windows.FILE_TYPE_PIPE)

	// Not a pipe at all.
	f, err := os.CreateTemp(t.TempDir(), "notapipe")
	if err != nil {
		t.Fatal(err)
	}
	h = dup(windows.Handle(f.Fd()))
	_ = f.Close()
	if _, err := ConnFromHandle(h); !errors.Is(err, ErrNotPipeServer) {
		t.Errorf("file: %v", err)
	}
	mustBeClosed(h, windows.FILE_TYPE_DISK)

	// An anonymous pipe: its read end is the server end of a pipe, opened
	// for synchronous I/O.
	var r, w windows.Handle
	if err := windows.CreatePipe(&r, &w, nil, 0); err != nil {
		t.Fatal(err)
	}
	_ = windows.CloseHandle(w)
	if _, err := ConnFromHandle(r); !errors.Is(err, ErrNotAdoptable) {
		t.Errorf("anonymous pipe: %v", err)
	}
	mustBeClosed(r, windows.FILE_TYPE_PIPE)

	// A synchronous server instance (no FILE_FLAG_OVERLAPPED).
	syncServer, syncClient := pipePair(t)
	_ = syncClient
	h = dup(syncServer.h)
	if _, err := ConnFromHandle(h); !errors.Is(err, ErrNotAdoptable) {
		t.Errorf("synchronous instance: %v", err)
	}
	mustBeClosed(h, windows.FILE_TYPE_PIPE)

	if _, err := ConnFromHandle(0); !errors.Is(err, ErrNotPipeServer) {
		t.Errorf("handle 0: %v", err)
	}

	// And the real thing, adopted in this process, works: the instance the
	// pipe server accepted is on no completion port. After the server conn
	// closes, WithHandle refuses to run.
	_ = WithHandle(s, func(sh windows.Handle) error { h = dup(sh); return nil })
	c, err := ConnFromHandle(h)
	if err != nil {
		t.Fatalf("adopting a pipe server instance: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := readString(t, c, 1); got != "x" {
		t.Fatalf("adopted conn read %q", got)
	}
	if c.LocalAddr().Network() != "pipe" || c.RemoteAddr().String() == "" {
		t.Errorf("addresses %v %v", c.LocalAddr(), c.RemoteAddr())
	}
	_ = s.Close()
	if err := WithHandle(s, func(windows.Handle) error { t.Error("fn ran on a closed conn"); return nil }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WithHandle after Close: %v", err)
	}
}

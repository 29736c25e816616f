//go:build unix

package ipc

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/internal/fdcount"
)

// sockPath returns a socket path in a fresh private directory.
func sockPath(t *testing.T) string {
	t.Helper()
	dir := privateTemp(t)
	if err := EnsurePrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "broker.sock")
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return uint64(fi.Sys().(*syscall.Stat_t).Ino)
}

// staleSocket leaves a socket file at path that nobody listens on, as a
// crashed broker would.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	if err := ul.Close(); err != nil {
		t.Fatal(err)
	}
}

func dialCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip checks that l accepts a real connection.
func roundTrip(t *testing.T, l *Listener) {
	t.Helper()
	c, err := Dial(dialCtx(t), l.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := s.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

func TestListenSingletonLifecycle(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	l, err := ListenSingleton(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want srw-------", fi.Mode())
	}
	if fi, err := os.Lstat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, %v", fi.Mode(), err)
	}
	roundTrip(t, l)

	// A second one, while the first lives, is refused by the lock.
	if _, err := ListenSingleton(path); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second ListenSingleton: %v, want ErrAlreadyRunning", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind after Close: %v", err)
	}
	// The lock was released: the path can be taken again.
	l2, err := ListenSingleton(path)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	roundTrip(t, l2)
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestListenSingletonReplacesStaleSocket(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	staleSocket(t, path)
	l, err := ListenSingleton(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	roundTrip(t, l) // the file at path is a live socket again
}

func TestListenSingletonLiveSocket(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	// A live server that does not use the lock (an older broker, say).
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	before := inode(t, path)
	if _, err := ListenSingleton(path); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("err = %v, want ErrAlreadyRunning", err)
	}
	if inode(t, path) != before {
		t.Error("live socket was replaced")
	}
	// Our failed attempt released the lock.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := ListenSingleton(path)
	if err != nil {
		t.Fatalf("after the live server left: %v", err)
	}
	_ = l.Close()
}

func TestListenSingletonRefusesNonSocket(t *testing.T) {
	path := sockPath(t)
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ListenSingleton(path)
	if err == nil || errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("err = %v, want a not-a-socket error", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Error("non-socket file was touched")
	}
}

func TestListenSingletonRefusesUnsafeDir(t *testing.T) {
	path := filepath.Join(privateTemp(t), "broker.sock")
	if err := os.Mkdir(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := ListenSingleton(path)
	wantDirProblem(t, err, ProblemBadMode)
}

func TestListenSingletonConcurrentGoroutines(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	const n = 5
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		ls    = make([]*Listener, n)
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ls[i], errs[i] = ListenSingleton(path)
		})
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case errs[i] == nil:
			won++
			roundTrip(t, ls[i])
			defer ls[i].Close()
		case !errors.Is(errs[i], ErrAlreadyRunning):
			t.Errorf("attempt %d: %v", i, errs[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d listeners won, want exactly 1", won)
	}
}

func TestListenSingletonConcurrentProcesses(t *testing.T) {
	path := sockPath(t)
	const n = 5
	hs := make([]*helper, n)
	for i := range hs {
		hs[i] = startHelper(t, "singleton", "PORTIER_IPC_TEST_PATH="+path)
	}
	for _, h := range hs {
		if _, err := h.stdin.Write([]byte("g")); err != nil {
			t.Fatal(err)
		}
	}
	won := 0
	for _, h := range hs {
		switch got := h.line(t); got {
		case "ok":
			won++
		case "already":
		default:
			t.Errorf("helper %d: %s", h.cmd.Process.Pid, got)
		}
	}
	if won != 1 {
		t.Fatalf("%d processes won, want exactly 1", won)
	}
	// While the winner holds it, we cannot take it either.
	if _, err := ListenSingleton(path); !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("parent: %v, want ErrAlreadyRunning", err)
	}
	for _, h := range hs {
		h.finish(t)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("winner left its socket behind: %v", err)
	}
}

func TestListenSingletonLockNotInherited(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc")
	}
	path := sockPath(t)
	l, err := ListenSingleton(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := startHelper(t, "fds")
	for {
		line, err := h.out.ReadString('\n')
		if strings.Contains(line, path) {
			t.Errorf("child inherited %s", strings.TrimSpace(line))
		}
		if err != nil {
			break
		}
	}
	h.finish(t)
}

func TestCloseKeepsSuccessorsSocket(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	if err := EnsurePrivateDir(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	// Somebody removed our file and bound their own at the same path.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	succ, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer succ.Close()
	ino := inode(t, path)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := inode(t, path); got != ino {
		t.Fatal("Close removed a socket that was not its own")
	}
	roundTrip(t, succ)
}

func TestListen(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	staleSocket(t, path)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	roundTrip(t, l)
	if _, err := Listen(path); !errors.Is(err, ErrAlreadyRunning) {
		t.Errorf("Listen on a live path: %v, want ErrAlreadyRunning", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	var nl net.Listener = l // Listener is a net.Listener
	_ = nl
}

func TestAcceptDeadline(t *testing.T) {
	l, err := Listen(sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Accept past deadline: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	if _, err := Dial(dialCtx(t), path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dial missing socket: %v, want ErrNotExist", err)
	}
	staleSocket(t, path)
	if _, err := Dial(dialCtx(t), path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial stale socket: %v, want ECONNREFUSED", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, path); err == nil {
		t.Error("dial with a canceled context succeeded")
	}
	long := "/" + strings.Repeat("x", maxSocketPath)
	if _, err := Dial(dialCtx(t), long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("dial over-long path: %v", err)
	}
	if _, err := ListenSingleton(long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("listen over-long path: %v", err)
	}
}

func TestDefaultSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	if p, err := DefaultSocketPath(); err != nil || p != "/run/user/4242/portier/broker.sock" {
		t.Errorf("with XDG_RUNTIME_DIR: %q, %v", p, err)
	}
	want := "/tmp/portier-" + strconv.Itoa(os.Geteuid()) + "/broker.sock"
	for _, v := range []string{"", "relative/dir"} {
		t.Setenv("XDG_RUNTIME_DIR", v)
		if p, err := DefaultSocketPath(); err != nil || p != want {
			t.Errorf("XDG_RUNTIME_DIR=%q: %q, %v; want %q", v, p, err, want)
		}
	}
	t.Setenv("XDG_RUNTIME_DIR", "/"+strings.Repeat("d", 200))
	if _, err := DefaultSocketPath(); err == nil {
		t.Error("over-long path accepted")
	}
}

// TestWaitPending: WaitPending returns once a connection is queued, leaves
// it queued for AcceptUnix, and returns net.ErrClosed once the listener is
// closed.
func TestWaitPending(t *testing.T) {
	path := sockPath(t)
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- l.WaitPending() }()
	select {
	case err := <-waited:
		t.Fatalf("WaitPending returned %v with nothing queued", err)
	case <-time.After(3 * pendingPoll):
	}
	c, err := Dial(dialCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitPending still waiting with a connection queued")
	}
	// It did not accept: the connection is still there, and still pending.
	if err := l.WaitPending(); err != nil {
		t.Fatal(err)
	}
	ac, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	ac.Close()

	go func() { waited <- l.WaitPending() }()
	l.Close() // before or during the wait: either way it ends

	select {
	case err := <-waited:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WaitPending after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitPending did not return after Close")
	}
}

// TestStopNewClients: with the socket file gone no client can connect, a
// client that had connected is still queued (Pending) and acceptable, and
// Close afterwards succeeds and releases the lock.
func TestStopNewClients(t *testing.T) {
	fdcount.Check(t)
	path := sockPath(t)
	l, err := ListenSingleton(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if pending, err := l.Pending(); err != nil || pending {
		t.Fatalf("Pending with nothing queued: %v, %v", pending, err)
	}
	queued, err := Dial(dialCtx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	defer queued.Close()
	if pending, err := l.Pending(); err != nil || !pending {
		t.Fatalf("Pending with a client queued: %v, %v", pending, err)
	}
	if removed, err := l.StopNewClients(); err != nil || !removed {
		t.Fatalf("StopNewClients: %v, %v", removed, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file after StopNewClients: %v", err)
	}
	if c, err := Dial(dialCtx(t), path); err == nil {
		c.Close()
		t.Fatal("a new client connected after StopNewClients")
	}
	ac, err := l.AcceptUnix()
	if err != nil {
		t.Fatalf("accept the queued client: %v", err)
	}
	ac.Close()
	if pending, err := l.Pending(); err != nil || pending {
		t.Fatalf("Pending after the queue was taken: %v, %v", pending, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := ListenSingleton(path)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	l2.Close()
}

//go:build linux || darwin

package ipc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/portier/portier/internal/fdcount"
	"golang.org/x/sys/unix"
)

// socketPair returns the two ends of a connected Unix socket pair; the
// kernel records the credentials of this process, as of now, for both.
func socketPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { _ = c.Close() })
	}
	return conns[0], conns[1]
}

// TestCheckPeerSelf: a peer of this very process is "me" under both rules,
// and CheckPeer reports its credentials.
func TestCheckPeerSelf(t *testing.T) {
	fdcount.Check(t)
	a, _ := socketPair(t)
	for _, self := range []Self{RealUID, EffectiveUID} {
		cred, err := CheckPeer(a, self)
		if err != nil {
			t.Fatalf("%s: %v", self, err)
		}
		if cred.PID != os.Getpid() || cred.UID != os.Geteuid() {
			t.Errorf("%s: cred %+v, want pid %d uid %d", self, cred, os.Getpid(), os.Geteuid())
		}
	}
}

// TestCheckPeerNeedsAKnownPeer: a connection the kernel reports nothing
// about, or an unknown rule, is refused, never admitted.
func TestCheckPeerNeedsAKnownPeer(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := CheckPeer(a, RealUID); err == nil {
		t.Fatal("a connection without kernel credentials was admitted")
	}
	s, _ := socketPair(t)
	if _, err := CheckPeer(s, Self(0)); err == nil {
		t.Fatal("the zero rule was accepted")
	}
}

func init() { extraHelpers["rules"] = runRulesHelper }

// runRulesHelper runs as root in a helper process: it makes socket pairs
// before and after setting only its effective uid to nobody, and prints
// what CheckPeer says about each under each rule. The kernel records a
// socket pair's peer with the effective uid of its creator. Then it sets
// its real uid to nobody too and prints what CheckPeer and a PeerGuard
// made while it was root say about the root peer.
func runRulesHelper() int {
	res := func(c net.Conn, self Self) string {
		_, err := CheckPeer(c, self)
		switch {
		case err == nil:
			return "self"
		case errors.Is(err, ErrForeignPeer):
			return "foreign"
		default:
			return "error: " + err.Error()
		}
	}
	pair := func() (net.Conn, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return nil, err
		}
		_ = unix.Close(fds[1])
		f := os.NewFile(uintptr(fds[0]), "pair")
		defer f.Close()
		return net.FileConn(f)
	}
	root, err := pair()
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	guard := NewPeerGuard(slog.New(slog.DiscardHandler))
	if err := syscall.Setreuid(-1, 65534); err != nil {
		fmt.Println("error: setreuid:", err)
		return 2
	}
	nobody, err := pair()
	if err != nil {
		fmt.Println("error:", err)
		return 2
	}
	fmt.Printf("root-peer real=%s effective=%s\n", res(root, RealUID), res(root, EffectiveUID))
	fmt.Printf("nobody-peer real=%s effective=%s\n", res(nobody, RealUID), res(nobody, EffectiveUID))
	if err := syscall.Setreuid(65534, -1); err != nil {
		fmt.Println("error: setreuid:", err)
		return 2
	}
	_, admitted := guard.Admit(root)
	fmt.Printf("root-peer, real uid now nobody: real=%s guard-made-as-root admits=%v\n", res(root, RealUID), admitted)
	return 0
}

// TestCheckPeerRules: servers compare with the real uid, clients with the
// effective one. A process whose effective uid is nobody while its real uid
// is root sees a root peer as itself only under RealUID, and a nobody peer
// only under EffectiveUID.
func TestCheckPeerRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper whose real and effective uids differ")
	}
	h := startHelper(t, "rules")
	want := []string{"root-peer real=self effective=foreign", "nobody-peer real=foreign effective=self",
		// CheckPeer sees the uid in force; a PeerGuard the one it was made with.
		"root-peer, real uid now nobody: real=foreign guard-made-as-root admits=true"}
	for _, w := range want {
		if got := h.line(t); got != w {
			t.Errorf("helper: %q, want %q", got, w)
		}
	}
	h.finish(t)
}

// exposedHelper copies the test binary into a directory another user can
// traverse (the build directory is private to us) and returns its path.
func exposedHelper(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ipcx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	exe := filepath.Join(dir, "helper.test")
	out, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}

// logRecords collects log lines.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *logRecords) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *logRecords) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.FieldsFunc(r.buf.String(), func(c rune) bool { return c == '\n' })
}

// TestPeerGuardRefusesAnotherUser: a process of another uid that connects
// is refused with its credentials, and the refusal is logged.
func TestPeerGuardRefusesAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper process as another user")
	}
	fdcount.Check(t)
	exe := exposedHelper(t)
	dir := filepath.Dir(exe)
	path := filepath.Join(dir, "s.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The private directory normally keeps other users away from a
	// socket; open this one so that the peer check is what stops them.
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=dial", "PORTIER_IPC_TEST_PATH="+path)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	_ = l.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var logs logRecords
	g := NewPeerGuard(slog.New(slog.NewTextHandler(&logs, nil)))
	cred, ok := g.Admit(c)
	if ok {
		t.Fatal("a peer running as uid 65534 was admitted")
	}
	if cred.UID != 65534 || cred.PID != cmd.Process.Pid {
		t.Errorf("refused peer reported as %+v, want uid 65534 pid %d", cred, cmd.Process.Pid)
	}
	var fe *ForeignPeerError
	if _, err := CheckPeer(c, EffectiveUID); !errors.As(err, &fe) || fe.Peer != cred || fe.Want != 0 {
		t.Errorf("CheckPeer: %v, want a *ForeignPeerError about %+v", err, cred)
	}
	lines := logs.lines()
	if len(lines) != 1 || !strings.Contains(lines[0], "peer_uid=65534") ||
		!strings.Contains(lines[0], fmt.Sprintf("peer_pid=%d", cmd.Process.Pid)) {
		t.Errorf("log: %q, want one record naming the peer's uid and pid", lines)
	}
}

// TestPeerGuardLogIsRateLimited: a burst of refusals writes one record; the
// next record, once the interval has passed, says how many were left out.
func TestPeerGuardLogIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logRecords
		g := NewPeerGuard(slog.New(slog.NewTextHandler(&logs, nil)))
		foreign := &ForeignPeerError{Peer: Cred{UID: 65534, PID: 42}, Self: RealUID, Want: 1000}
		for range 50 {
			g.refused(foreign.Peer, foreign)
		}
		if n := len(logs.lines()); n != 1 {
			t.Fatalf("%d records for a burst of 50 refusals, want 1", n)
		}
		time.Sleep(peerLogInterval - time.Nanosecond)
		g.refused(foreign.Peer, foreign)
		if n := len(logs.lines()); n != 1 {
			t.Fatalf("%d records before the interval passed, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		g.refused(Cred{}, errors.New("no credentials"))
		lines := logs.lines()
		if len(lines) != 2 || !strings.Contains(lines[1], "more_refused=50") || !strings.Contains(lines[1], "no credentials") {
			t.Fatalf("records %q: want a second one counting the 50 left out", lines)
		}
	})
}

// TestSocketPath: $PORTIER_SOCKET wins; without it the per-user default.
func TestSocketPath(t *testing.T) {
	t.Setenv(EnvSocket, "/x/broker.sock")
	if p, err := SocketPath(); err != nil || p != "/x/broker.sock" {
		t.Fatalf("with %s: %q, %v", EnvSocket, p, err)
	}
	t.Setenv(EnvSocket, "")
	want, werr := DefaultSocketPath()
	if p, err := SocketPath(); p != want || (err == nil) != (werr == nil) {
		t.Fatalf("without %s: %q, %v; want %q, %v", EnvSocket, p, err, want, werr)
	}
}

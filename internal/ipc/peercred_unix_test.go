//go:build linux || darwin

package ipc

import (
	"net"
	"os"
	"testing"

	"github.com/portier/portier/internal/fdcount"
	"golang.org/x/sys/unix"
)

func TestPeerCredSelf(t *testing.T) {
	fdcount.Check(t)
	l, err := Listen(sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
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
	want := Cred{UID: os.Geteuid(), PID: os.Getpid()}
	for name, conn := range map[string]*net.UnixConn{"server side": s, "client side": c} {
		got, err := PeerCred(conn)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	// The connection is still usable afterwards.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestPeerCredSocketpair(t *testing.T) {
	fdcount.Check(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns []*net.UnixConn
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		_ = f.Close() // FileConn dup'ed it
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c.(*net.UnixConn))
	}
	got, err := PeerCred(conns[0])
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != os.Geteuid() || got.PID != os.Getpid() {
		t.Errorf("got %+v, want uid %d pid %d", got, os.Geteuid(), os.Getpid())
	}
}

func TestPeerCredChildProcess(t *testing.T) {
	fdcount.Check(t)
	l, err := Listen(sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := startHelper(t, "dial", "PORTIER_IPC_TEST_PATH="+l.Path())
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := h.line(t); got != "connected" {
		t.Fatalf("helper: %s", got)
	}
	cred, err := PeerCred(s)
	if err != nil {
		t.Fatal(err)
	}
	if cred.PID != h.cmd.Process.Pid || cred.UID != os.Geteuid() {
		t.Errorf("got %+v, want pid %d uid %d", cred, h.cmd.Process.Pid, os.Geteuid())
	}
	h.finish(t)
}

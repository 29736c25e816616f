//go:build linux || darwin

package fdpass

import (
	"encoding/binary"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// frame builds one protocol frame around body.
func frame(body []byte) []byte {
	b := make([]byte, headerLen+len(body))
	b[0] = framingVersion
	binary.LittleEndian.PutUint32(b[1:], uint32(len(body)))
	copy(b[headerLen:], body)
	return b
}

// unixConnFromFD wraps fd (taking ownership) without going through the code
// under test.
func unixConnFromFD(t testing.TB, fd int) *net.UnixConn {
	t.Helper()
	f := os.NewFile(uintptr(fd), "test")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		t.Fatalf("FileConn: %v", err)
	}
	return c.(*net.UnixConn)
}

// socketPair returns a connected pair of AF_UNIX sockets of the given type,
// closed when the test ends.
func socketPair(t testing.TB, typ int) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	a, b := unixConnFromFD(t, fds[0]), unixConnFromFD(t, fds[1])
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

// pipeFDs returns n fresh descriptors (read ends of pipes; the write ends are
// closed), each a distinct file, closed when the test ends.
func pipeFDs(t testing.TB, n int) []int {
	t.Helper()
	var fds []int
	for range n {
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			t.Fatalf("pipe: %v", err)
		}
		unix.CloseOnExec(p[0])
		_ = unix.Close(p[1])
		fds = append(fds, p[0])
	}
	t.Cleanup(func() { closeFDs(fds) })
	return fds
}

// sameFile reports whether two descriptors refer to the same open file.
func sameFile(t testing.TB, a, b int) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		t.Fatalf("fstat %d: %v", a, err)
	}
	if err := unix.Fstat(b, &sb); err != nil {
		t.Fatalf("fstat %d: %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// sendRaw writes p with the control data oob, the first sendmsg carrying oob
// and the rest following without it, waiting in the poller when the peer's
// buffer is full. It plays a sender that does not go through SendWithFD.
func sendRaw(c *net.UnixConn, p, oob []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var sysErr error
	err = rc.Write(func(s uintptr) bool {
		for len(p) > 0 {
			n, err := unix.SendmsgN(int(s), p, oob, nil, unix.MSG_DONTWAIT)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false
			case err != nil:
				sysErr = err
				return true
			}
			p, oob = p[n:], nil
		}
		return true
	})
	if err != nil {
		return err
	}
	return sysErr
}

// rawSend writes p with the given descriptors in one sendmsg, bypassing
// SendWithFD's checks, to play a misbehaving sender.
func rawSend(t testing.TB, c *net.UnixConn, p []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := sendRaw(c, p, oob); err != nil {
		t.Fatalf("raw sendmsg: %v", err)
	}
}

func isCloexec(t testing.TB, fd int) bool {
	t.Helper()
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		t.Fatalf("F_GETFD: %v", err)
	}
	return flags&unix.FD_CLOEXEC != 0
}

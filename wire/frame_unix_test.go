//go:build unix

package wire_test

import (
	"net"
	"os"
	"syscall"
	"testing"
)

// TestNoReadAheadSocketpair runs the pipelining scenario over a kernel
// AF_UNIX stream socketpair, where the tail is already in the receive
// buffer when the frames are read: any read-ahead would swallow it.
func TestNoReadAheadSocketpair(t *testing.T) {
	checkNoReadAheadConn(t, func() (net.Conn, net.Conn) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		return fileConn(t, fds[0], "client"), fileConn(t, fds[1], "server")
	})
}

// fileConn turns one end of a socketpair into a net.Conn. net.FileConn
// duplicates the descriptor, so the original is closed here.
func fileConn(t *testing.T, fd int, name string) net.Conn {
	t.Helper()
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

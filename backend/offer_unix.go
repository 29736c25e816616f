//go:build unix

package backend

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/portier/portier/internal/fdpass"
	"golang.org/x/sys/unix"
)

// fdArrival is a descriptor received with SCM_RIGHTS together with its
// offer frame (fd < 0: none came), or the receive error that made it
// unusable.
type fdArrival struct {
	fd  int
	err error
}

func (a fdArrival) problem() error {
	switch {
	case a.err != nil:
		return a.err
	case a.fd < 0:
		return errors.New("offer arrived without a descriptor")
	}
	return nil
}

// adopt makes the descriptor a net.Conn (an *fdpass.SocketConn: see
// ConnFromFD for why not a *net.UnixConn); ConnFromFD takes the
// descriptor, closing it on error.
func (a fdArrival) adopt() (net.Conn, error) {
	c, err := fdpass.ConnFromFD(a.fd)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (a fdArrival) discard() { closeFD(a.fd) }

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// writeReady writes the ready event on an adopted connection. The socket is
// non-blocking (its file description is shared with the broker's Go
// socket), and a few dozen bytes into a fresh local socket never block, so
// the first attempt is a plain write, which costs no deadline timer; a
// partial write is finished with a deadline.
func writeReady(conn net.Conn, ready []byte) error {
	var n int
	err := fdpass.WithFD(conn.(syscall.Conn), func(s int) error {
		var werr error
		n, werr = writeFD(s, ready)
		return werr
	})
	if err != nil || n == len(ready) {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(ready[n:]); err != nil {
		return err
	}
	return conn.SetWriteDeadline(time.Time{})
}

// writeFD writes what the socket takes at once; EAGAIN counts as zero bytes.
func writeFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}

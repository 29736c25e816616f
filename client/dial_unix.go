//go:build unix

package client

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"time"
)

// osConn is the connection a Conn reads and writes: a Unix domain socket.
// It is a type alias, not an interface, so that the hot path calls the
// socket's methods directly.
type osConn = *net.UnixConn

// maxReplay bounds the bytes a Conn keeps for replay while its route is not
// settled; it is well below a Unix socket's send buffer, so those writes
// never block.
const maxReplay = 64 << 10

// dialEndpoint connects to the Unix socket at path before deadline.
//
// A connect to a Unix domain socket never waits: it completes, or fails at
// once (Linux answers a full accept backlog with EAGAIN, BSD and macOS
// refuse). So the connect itself needs neither ctx nor deadline, and it is
// made without them: net.Dialer would arm a timer for the deadline on every
// dial (a wakeup of an idle thread of this process each time). The
// deadline and ctx bound the waits between EAGAIN retries.
func dialEndpoint(ctx context.Context, path string, deadline time.Time) (*net.UnixConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	addr := &net.UnixAddr{Name: path, Net: "unix"}
	c, err := net.DialUnix("unix", nil, addr)
	// The server is alive but busy: wait and retry within the deadline
	// rather than report it missing.
	for wait := time.Millisecond; err != nil && errors.Is(err, syscall.EAGAIN); wait = min(2*wait, 50*time.Millisecond) {
		if time.Until(deadline) < wait {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
		c, err = net.DialUnix("unix", nil, addr)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// checkBackend has nothing to check on Unix: backend_pipe lives in the
// user's private directory, where no other user can bind a socket.
func checkBackend(*net.UnixConn) error { return nil }

// brokerMissing reports whether a dial error means nobody serves the socket:
// no such file, or a stale socket that refuses connections.
func brokerMissing(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// absEndpoint makes a socket path absolute for the broker AutoStart starts,
// which runs in another directory.
func absEndpoint(path string) (string, error) { return filepath.Abs(path) }

// nonblocking returns a reader of what is already in uc's receive buffer,
// for lastChance.
func nonblocking(uc *net.UnixConn) (io.Reader, error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return nonblockReader{rc}, nil
}

// nonblockReader reads what is already in a socket's receive buffer without
// waiting: an empty buffer reads as io.EOF.
type nonblockReader struct{ rc syscall.RawConn }

func (r nonblockReader) Read(p []byte) (int, error) {
	var n int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // done, never wait
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, io.EOF
	case rerr != nil:
		return 0, rerr
	case n <= 0:
		return 0, io.EOF
	}
	return n, nil
}

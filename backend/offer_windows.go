//go:build windows

package backend

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/portier/portier/internal/fdpass"
	"golang.org/x/sys/windows"
)

// pipeArrival is the handle an offer names in handle_value: the server end
// of the client's pipe instance, which the broker duplicated into this
// process before it sent the offer. It is this process's handle from then
// on, so every path closes it or adopts it. The value comes from the
// broker over the control connection this process opened to it, never
// from a client.
type pipeArrival struct {
	h windows.Handle
}

// arrivalOf reads the handle an offer names. A value that cannot be a
// handle of this process (0, or wider than a handle) is no handle: there is
// nothing to close.
func arrivalOf(value uint64) pipeArrival {
	if value == 0 || uint64(windows.Handle(value)) != value || windows.Handle(value) == windows.InvalidHandle {
		return pipeArrival{}
	}
	return pipeArrival{h: windows.Handle(value)}
}

// errNoHandle: the offer named no handle.
var errNoHandle = errors.New("offer arrived without a handle value")

func (a pipeArrival) problem() error {
	if a.h == 0 {
		return errNoHandle
	}
	return nil
}

// adopt checks that the handle is the server end of a pipe and binds it to
// this process's completion port (ConnFromHandle closes it on failure).
func (a pipeArrival) adopt() (net.Conn, error) {
	c, err := fdpass.ConnFromHandle(a.h)
	if err != nil {
		return nil, fmt.Errorf("handle %#x: %w", uintptr(a.h), err)
	}
	return c, nil
}

func (a pipeArrival) discard() {
	if a.h != 0 {
		_ = windows.CloseHandle(a.h)
	}
}

// writeReady writes the ready event on an adopted connection under a
// deadline. The write is in the client's pipe buffer when it returns, so
// the client sees the event before any reply of the application's.
func writeReady(conn net.Conn, ready []byte) error {
	_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := conn.Write(ready); err != nil {
		return err
	}
	return conn.SetWriteDeadline(time.Time{})
}

package fdpass

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// ConnFromHandle adopts h, the server end of a named pipe that another
// process duplicated into this one (the handle value of a HandoffOffer), as
// a net.Conn with working deadlines. It is the Windows counterpart of
// ConnFromFD and takes ownership of h: on every error h has been closed.
//
// It checks that h is a pipe (GetFileType) and its server end
// (GetNamedPipeInfo), then binds it to go-winio's I/O completion port, the
// same machinery go-winio's own pipe connections use. That binding is why
// the sender must never have bound the instance to a completion port of its
// own: a port binds the file object that every duplicate shares, and a
// second binding fails (ErrNotAdoptable). The pipe type is not checked:
// Wine reports byte pipes as message pipes.
//
// Reads return io.EOF once the client has closed its end. Close closes this
// process's handle only; it does not disconnect the pipe, so it is safe to
// call on a connection that was handed on again.
func ConnFromHandle(h windows.Handle) (net.Conn, error) {
	if h == 0 || h == windows.InvalidHandle {
		return nil, fmt.Errorf("%w: handle value %#x", ErrNotPipeServer, uintptr(h))
	}
	if err := checkPipeServer(h); err != nil {
		_ = windows.CloseHandle(h)
		return nil, err
	}
	f, err := winio.NewOpenFile(h)
	if err != nil {
		_ = windows.CloseHandle(h)
		return nil, fmt.Errorf("%w: %w", ErrNotAdoptable, err)
	}
	wf, ok := f.(winioFile)
	if !ok {
		_ = f.Close()
		return nil, fmt.Errorf("fdpass: go-winio file %T has no deadlines", f)
	}
	return &pipeConn{f: wf}, nil
}

// checkPipeServer checks that h is the server end of a named pipe.
func checkPipeServer(h windows.Handle) error {
	t, err := windows.GetFileType(h)
	if err != nil {
		return fmt.Errorf("%w: GetFileType: %w", ErrNotPipeServer, err)
	}
	if t != windows.FILE_TYPE_PIPE {
		return fmt.Errorf("%w: file type %d", ErrNotPipeServer, t)
	}
	var flags uint32
	if err := windows.GetNamedPipeInfo(h, &flags, nil, nil, nil); err != nil {
		return fmt.Errorf("%w: GetNamedPipeInfo: %w", ErrNotPipeServer, err)
	}
	if flags&windows.PIPE_SERVER_END == 0 {
		return fmt.Errorf("%w: client end", ErrNotPipeServer)
	}
	return nil
}

// winioFile is what go-winio's NewOpenFile returns besides io.ReadWriteCloser.
type winioFile interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	Fd() uintptr
}

// pipeConn is an adopted pipe handle as a net.Conn.
type pipeConn struct {
	f winioFile
}

// Read reads up to len(b) bytes; io.EOF once the client closed its end.
func (c *pipeConn) Read(b []byte) (int, error) { return c.f.Read(b) }

func (c *pipeConn) Write(b []byte) (int, error) { return c.f.Write(b) }

// Close closes this process's handle (pending I/O is cancelled first).
func (c *pipeConn) Close() error { return c.f.Close() }

func (c *pipeConn) LocalAddr() net.Addr  { return handedOffAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr { return handedOffAddr{} }

func (c *pipeConn) SetDeadline(t time.Time) error {
	if err := c.f.SetReadDeadline(t); err != nil {
		return err
	}
	return c.f.SetWriteDeadline(t)
}

func (c *pipeConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// Fd returns the pipe handle, without side effects.
func (c *pipeConn) Fd() uintptr { return c.f.Fd() }

// handedOffAddr is the address of an adopted pipe: the name is not carried
// by the handle in a form worth a system call.
type handedOffAddr struct{}

func (handedOffAddr) Network() string { return "pipe" }
func (handedOffAddr) String() string  { return "handed-off pipe" }

// WithHandle runs fn with the handle of a live connection, inside
// c.SyscallConn().Control, so the handle stays valid (the connection cannot
// be closed underneath): the Windows counterpart of WithFD, for
// DuplicateIntoProcess on a broker's *ipc.PipeConn. fn must not keep h.
func WithHandle(c syscall.Conn, fn func(h windows.Handle) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("fdpass: %w", err)
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(windows.Handle(fd)) }); err != nil {
		return fmt.Errorf("fdpass: %w", err)
	}
	return fnErr
}

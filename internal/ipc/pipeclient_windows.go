package ipc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// ErrNotListening reports a named pipe that exists but offers no instance
// to connect to, and did not offer one for pipeNoListener: the server that
// created it stopped accepting. A broker's pipe is in this state after the
// broker exited while backends still hold handed-off instances of it (those
// keep the name alive); to a client it means the same as a missing pipe.
var ErrNotListening = errors.New("ipc: the pipe exists but nobody is listening on it")

// errHalfClose is what ClientPipe's CloseWrite and CloseRead return.
var errHalfClose = fmt.Errorf("%w: a byte-mode named pipe cannot be half-closed: %w", ErrUnsupported, errors.ErrUnsupported)

const (
	// pipeBusySlice bounds one WaitNamedPipe call, which ignores ctx: a
	// cancelled dial notices within this time.
	pipeBusySlice = 20 * time.Millisecond
	// pipeNoListener is how long every instance of a pipe may stay busy,
	// with none coming free, before DialPipeDeadline reports
	// ErrNotListening. A live server arms a new instance within
	// microseconds of accepting one; the margin is for one starved of CPU,
	// because taking a live broker for a missing one fails the Dial, while
	// noticing a missing one later only delays an error (or AutoStart).
	pipeNoListener = time.Second
)

var (
	kernel32Client        = windows.NewLazySystemDLL("kernel32.dll")
	procClientWaitPipe    = kernel32Client.NewProc("WaitNamedPipeW")
	procClientPeekPipe    = kernel32Client.NewProc("PeekNamedPipe")
	errClientPipeProcMiss = errors.New("ipc: kernel32 lacks a named-pipe call")
)

// DialPipeDeadline opens the client end of the named pipe name before
// deadline (DefaultDialTimeout from now when it is zero) or until ctx ends.
//
// A pipe whose instances are all busy is waited for with WaitNamedPipe,
// in slices of at most pipeBusySlice so that ctx is honoured, and retried
// whenever an instance comes free. The errors tell the cases apart: a pipe
// that does not exist matches os.ErrNotExist (ERROR_FILE_NOT_FOUND); a pipe
// that exists but has offered no free instance for a second matches
// ErrNotListening; a busy pipe at the deadline matches
// os.ErrDeadlineExceeded and windows.ERROR_PIPE_BUSY.
//
// The connection is opened with SECURITY_ANONYMOUS, so the server cannot
// impersonate this process: a client must not lend its identity to
// whoever created a pipe of the expected name.
func DialPipeDeadline(ctx context.Context, name string, deadline time.Time) (*ClientPipe, error) {
	if deadline.IsZero() {
		deadline = time.Now().Add(DefaultDialTimeout)
	}
	name16, err := windows.UTF16PtrFromString(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	var busySince time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		h, err := windows.CreateFile(name16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
			windows.OPEN_EXISTING, windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_ANONYMOUS, 0)
		if err == nil {
			return newClientPipe(h, name)
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, &os.PathError{Op: "open", Path: name, Err: err}
		}
		now := time.Now()
		if busySince.IsZero() {
			busySince = now
		}
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)}
		}
		if testHookClientPipeBusy != nil {
			testHookClientPipeBusy()
		}
		switch werr := waitPipeInstance(name16, min(left, pipeBusySlice)); {
		case werr == nil:
			// An instance came free: race for it. A server was listening,
			// so the pipe is alive however often the race is lost.
			busySince = time.Time{}
		case errors.Is(werr, windows.ERROR_SEM_TIMEOUT):
			if time.Since(busySince) >= pipeNoListener {
				return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("%w (%w)", ErrNotListening, err)}
			}
		case errors.Is(werr, windows.ERROR_FILE_NOT_FOUND):
			// The last instance went away: the next open says so.
		default:
			return nil, &os.PathError{Op: "open", Path: name, Err: fmt.Errorf("WaitNamedPipe: %w", werr)}
		}
	}
}

// testHookClientPipeBusy, when set, runs each time DialPipeDeadline found
// every instance busy, before it waits.
var testHookClientPipeBusy func()

// waitPipeInstance waits up to d (at least 1 ms: 0 would mean the pipe's
// default wait) for an instance of name to listen; ERROR_SEM_TIMEOUT if
// none did.
func waitPipeInstance(name *uint16, d time.Duration) error {
	if err := procClientWaitPipe.Find(); err != nil {
		return fmt.Errorf("%w: %w", errClientPipeProcMiss, err)
	}
	ms := max(1, d.Milliseconds())
	r, _, err := procClientWaitPipe.Call(uintptr(unsafe.Pointer(name)), uintptr(ms))
	if r == 0 {
		return err
	}
	return nil
}

// ClientPipe is the client end of a named-pipe connection, opened by
// DialPipeDeadline: a net.Conn with working deadlines, whose Read returns
// io.EOF once the server end is closed. Its handle is bound to go-winio's
// I/O completion port in this process, which is right for a client end:
// it is never handed to another process (the broker hands the server end).
//
// A byte-mode named pipe has no half-close: CloseWrite and CloseRead
// return an error matching errors.ErrUnsupported (and ErrUnsupported).
// Closing the connection is the only way to signal the end of a stream.
type ClientPipe struct {
	f      clientFile
	name   string
	closed atomic.Bool
}

// clientFile is the part of go-winio's file that ClientPipe uses.
type clientFile interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	Fd() uintptr
}

var (
	_ net.Conn                  = (*ClientPipe)(nil)
	_ syscall.Conn              = (*ClientPipe)(nil)
	_ interface{ Fd() uintptr } = (*ClientPipe)(nil)
)

func newClientPipe(h windows.Handle, name string) (*ClientPipe, error) {
	rwc, err := winio.NewOpenFile(h)
	if err != nil {
		_ = windows.CloseHandle(h)
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	f, ok := rwc.(clientFile)
	if !ok {
		_ = rwc.Close()
		return nil, fmt.Errorf("ipc: go-winio file %T lacks deadlines or Fd", rwc)
	}
	return &ClientPipe{f: f, name: name}, nil
}

// Read reads from the pipe. A closed or disconnected server end reads as
// io.EOF.
func (c *ClientPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		// No zero-byte ReadFile: on a pipe Wine treats as message-typed
		// it waits for a message.
		return 0, nil
	}
	n, err := c.f.Read(b)
	switch {
	case err == nil || errors.Is(err, io.EOF):
		return n, err
	case errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED):
		return n, io.EOF
	case errors.Is(err, windows.ERROR_MORE_DATA):
		// A message-typed pipe read in byte mode: the rest of the message
		// comes with the next Read.
		return n, nil
	}
	return n, c.opError("read", err)
}

// Write writes b to the pipe. An empty b is not written: a zero-byte write
// to a message-typed pipe would reach the reader as an end of stream.
func (c *ClientPipe) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.f.Write(b)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// Close closes the pipe, interrupting Reads and Writes in progress. A
// second Close returns an error matching net.ErrClosed.
func (c *ClientPipe) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	return c.f.Close()
}

// CloseWrite fails: see ClientPipe.
func (c *ClientPipe) CloseWrite() error { return c.opError("close write", errHalfClose) }

// CloseRead fails: see ClientPipe.
func (c *ClientPipe) CloseRead() error { return c.opError("close read", errHalfClose) }

// SetDeadline sets the read and write deadlines.
func (c *ClientPipe) SetDeadline(t time.Time) error {
	if err := c.f.SetReadDeadline(t); err != nil {
		return err
	}
	return c.f.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; a Read in progress is cancelled
// when it passes and returns an error matching os.ErrDeadlineExceeded.
func (c *ClientPipe) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *ClientPipe) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// LocalAddr and RemoteAddr both name the pipe.
func (c *ClientPipe) LocalAddr() net.Addr { return PipeAddr(c.name) }

// RemoteAddr names the pipe.
func (c *ClientPipe) RemoteAddr() net.Addr { return PipeAddr(c.name) }

// Fd returns the pipe handle. Unlike os.File.Fd it changes nothing about
// the connection. The handle is valid until Close; do not use it while
// another goroutine may close the ClientPipe.
func (c *ClientPipe) Fd() uintptr { return c.f.Fd() }

// SyscallConn gives access to the pipe handle through Control; its Read
// and Write are not supported (there is no poller to wait with).
func (c *ClientPipe) SyscallConn() (syscall.RawConn, error) { return clientRawConn{c}, nil }

// Buffered returns how many bytes can be read right now without waiting
// (PeekNamedPipe). A server end that is closed or gone reports io.EOF once
// nothing is left to read.
func (c *ClientPipe) Buffered() (int, error) {
	if c.closed.Load() {
		return 0, c.opError("peek", net.ErrClosed)
	}
	if err := procClientPeekPipe.Find(); err != nil {
		return 0, fmt.Errorf("%w: %w", errClientPipeProcMiss, err)
	}
	var avail uint32
	r, _, err := procClientPeekPipe.Call(c.f.Fd(), 0, 0, 0, uintptr(unsafe.Pointer(&avail)), 0)
	if r == 0 {
		if errors.Is(err, windows.ERROR_BROKEN_PIPE) || errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED) {
			return 0, io.EOF
		}
		return 0, c.opError("peek", err)
	}
	return int(avail), nil
}

func (c *ClientPipe) opError(op string, err error) error {
	if errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
		err = net.ErrClosed
	}
	return &net.OpError{Op: op, Net: "pipe", Addr: PipeAddr(c.name), Err: err}
}

type clientRawConn struct{ c *ClientPipe }

func (r clientRawConn) Control(fn func(fd uintptr)) error {
	if r.c.closed.Load() {
		return r.c.opError("control", net.ErrClosed)
	}
	fn(r.c.f.Fd())
	return nil
}

func (r clientRawConn) Read(func(fd uintptr) bool) error {
	return r.c.opError("raw read", errors.ErrUnsupported)
}

func (r clientRawConn) Write(func(fd uintptr) bool) error {
	return r.c.opError("raw write", errors.ErrUnsupported)
}

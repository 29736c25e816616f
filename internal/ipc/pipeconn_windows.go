package ipc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// pipeIOBufSize is the size of a PipeConn's private transfer buffer per
// direction. The kernel reads into and writes from this buffer, never from
// the caller's slice; a Read never asks the kernel for more than the caller
// asked for, whatever this size.
const pipeIOBufSize = 16 << 10

// PipeConn is the server end of one named-pipe connection accepted by a
// Windows Listener. It does event-based overlapped I/O: the pipe handle is
// never associated with an I/O completion port, so it can be duplicated into
// another process (DuplicateHandle) and adopted there on that process's own
// completion port. (A completion port binds the file object, which every
// duplicate shares: an instance read through go-winio or os.File in this
// process could never be bound again in the backend.)
//
// Read never reads ahead: it asks the kernel for at most len(b) bytes, so
// io.ReadFull reads exactly a frame and leaves whatever the client pipelined
// after it in the pipe for the next owner. Deadlines are enforced with
// CancelIoEx, and an operation returns only once the kernel is done with it,
// so no buffer or OVERLAPPED is ever released under the kernel.
//
// PipeConn implements net.Conn and syscall.Conn. Reads may run concurrently
// with writes; concurrent Reads (or Writes) are serialized.
type PipeConn struct {
	h    windows.Handle
	name string

	closed atomic.Bool
	// hmu guards h against Close: Control, ClientPID and the peer checks hold
	// it for reading while they use the handle.
	hmu sync.RWMutex

	rd, wr pipeOp
}

// pipeOp is one direction of a PipeConn. Every field the kernel touches
// (o, buf) lives in this heap object, which the garbage collector never
// moves, and is not reused before the kernel completed the operation.
type pipeOp struct {
	mu  sync.Mutex // one operation at a time in this direction
	o   windows.Overlapped
	ev  windows.Handle // manual reset; the kernel signals it when o completes
	buf []byte         // allocated at first use

	// dmu guards deadline and wake against Close.
	dmu      sync.Mutex
	deadline time.Time
	// wake (auto reset) interrupts a wait in progress: signaled when the
	// deadline changes or the connection closes.
	wake       windows.Handle
	wakeClosed bool
}

// newPipeConn takes ownership of h (a connected, overlapped server instance)
// and of connectEv (a manual-reset event, reused for reads). On error both
// are closed.
func newPipeConn(h, connectEv windows.Handle, name string) (*PipeConn, error) {
	c := &PipeConn{h: h, name: name}
	c.rd.ev = connectEv
	var evs [3]windows.Handle
	for i := range evs {
		// Manual reset for the write completion, auto reset for the wakes.
		manual := uint32(0)
		if i == 0 {
			manual = 1
		}
		ev, err := windows.CreateEvent(nil, manual, 0, nil)
		if err != nil {
			for _, e := range evs[:i] {
				_ = windows.CloseHandle(e)
			}
			_ = windows.CloseHandle(connectEv)
			_ = windows.CloseHandle(h)
			return nil, fmt.Errorf("ipc: CreateEvent: %w", err)
		}
		evs[i] = ev
	}
	c.wr.ev, c.rd.wake, c.wr.wake = evs[0], evs[1], evs[2]
	return c, nil
}

// Read reads at most len(b) bytes: never more than asked, so nothing is
// taken from the pipe that a later owner of the handle should see. It
// returns io.EOF when the client closed its end, and an error matching
// os.ErrDeadlineExceeded when the read deadline passed (the connection stays
// usable: no byte was lost).
func (c *PipeConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	op := &c.rd
	op.mu.Lock()
	defer op.mu.Unlock()
	if c.closed.Load() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if op.buf == nil {
		op.buf = make([]byte, pipeIOBufSize)
	}
	want := min(len(b), len(op.buf))
	n, err := c.do(op, func(o *windows.Overlapped) error {
		return windows.ReadFile(c.h, op.buf[:want], nil, o)
	})
	copy(b, op.buf[:n])
	switch {
	case err == nil && n == 0:
		// Zero bytes are not data. Byte-mode pipes do not deliver
		// zero-length writes (checked under Wine); should one arrive,
		// end the stream as go-winio does rather than let io.ReadFull
		// spin on it.
		return 0, io.EOF
	case err == nil:
		return n, nil
	case errors.Is(err, windows.ERROR_BROKEN_PIPE):
		return n, io.EOF
	}
	return n, c.opError("read", err)
}

// Write writes all of b, or stops at the write deadline (an error matching
// os.ErrDeadlineExceeded, with the count of bytes the pipe took).
func (c *PipeConn) Write(b []byte) (int, error) {
	op := &c.wr
	op.mu.Lock()
	defer op.mu.Unlock()
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	if op.buf == nil && len(b) > 0 {
		op.buf = make([]byte, pipeIOBufSize)
	}
	total := 0
	for total < len(b) {
		chunk := copy(op.buf, b[total:])
		n, err := c.do(op, func(o *windows.Overlapped) error {
			return windows.WriteFile(c.h, op.buf[:chunk], nil, o)
		})
		total += n
		if err != nil {
			if errors.Is(err, windows.ERROR_NO_DATA) || errors.Is(err, windows.ERROR_BROKEN_PIPE) ||
				errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED) {
				err = fmt.Errorf("%w: %w", syscall.EPIPE, err)
			}
			return total, c.opError("write", err)
		}
	}
	return total, nil
}

// do starts one overlapped operation and waits for it to finish, honoring
// op's deadline and Close. It returns only when the kernel is done with
// op.o and op.buf: an interrupted operation is cancelled with CancelIoEx and
// then waited for. Called with op.mu held.
func (c *PipeConn) do(op *pipeOp, start func(*windows.Overlapped) error) (int, error) {
	if err := op.expired(); err != nil {
		return 0, err
	}
	op.o = windows.Overlapped{HEvent: op.ev}
	err := start(&op.o)
	if err != nil && !errors.Is(err, windows.ERROR_IO_PENDING) {
		// Failed at once: nothing is pending.
		return 0, err
	}
	var n uint32
	if err != nil {
		if why := c.wait(op); why != nil {
			// Cancel, then wait for the operation to end either way: it may
			// have completed before the cancel reached it, and then its
			// result (data!) is what counts.
			// ERROR_NOT_FOUND: it completed already.
			_ = windows.CancelIoEx(c.h, &op.o)
			gerr := windows.GetOverlappedResult(c.h, &op.o, &n, true)
			if errors.Is(gerr, windows.ERROR_OPERATION_ABORTED) {
				return int(n), why
			}
			return int(n), gerr
		}
	}
	err = windows.GetOverlappedResult(c.h, &op.o, &n, false)
	return int(n), err
}

// testHookWait, if set (by tests only), is called each time an operation
// is about to block in the kernel, with true for reads.
var testHookWait func(read bool)

// wait blocks until op's operation completes (nil), its deadline passes
// (os.ErrDeadlineExceeded) or the connection is closed (net.ErrClosed).
func (c *PipeConn) wait(op *pipeOp) error {
	handles := [2]windows.Handle{op.ev, op.wake}
	for {
		if c.closed.Load() {
			return net.ErrClosed
		}
		timeout, err := op.timeout()
		if err != nil {
			return err
		}
		if testHookWait != nil {
			testHookWait(op == &c.rd)
		}
		r, werr := windows.WaitForMultipleObjects(handles[:], false, timeout)
		switch {
		case werr != nil:
			return fmt.Errorf("ipc: WaitForMultipleObjects: %w", werr)
		case r == windows.WAIT_OBJECT_0:
			return nil
		}
		// Woken (deadline changed, Close) or timed out: look again.
	}
}

// timeout converts op's deadline into a WaitForMultipleObjects timeout.
func (op *pipeOp) timeout() (uint32, error) {
	op.dmu.Lock()
	d := op.deadline
	op.dmu.Unlock()
	if d.IsZero() {
		return windows.INFINITE, nil
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, os.ErrDeadlineExceeded
	}
	// Round up, so a wait never ends just before the deadline and spins.
	ms := (left + time.Millisecond - 1) / time.Millisecond
	if ms >= windows.INFINITE {
		ms = windows.INFINITE - 1
	}
	return uint32(ms), nil
}

func (op *pipeOp) expired() error {
	op.dmu.Lock()
	d := op.deadline
	op.dmu.Unlock()
	if !d.IsZero() && !time.Now().Before(d) {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (op *pipeOp) setDeadline(t time.Time) error {
	op.dmu.Lock()
	defer op.dmu.Unlock()
	if op.wakeClosed {
		return net.ErrClosed
	}
	op.deadline = t
	// Wake an operation in progress so it sees the new deadline; if none is,
	// the next one wakes once, finds nothing changed, and waits again.
	return windows.SetEvent(op.wake)
}

// SetReadDeadline sets the deadline for Read, including one in progress.
func (c *PipeConn) SetReadDeadline(t time.Time) error {
	if err := c.rd.setDeadline(t); err != nil {
		return c.opError("set read deadline", err)
	}
	return nil
}

// SetWriteDeadline sets the deadline for Write, including one in progress.
func (c *PipeConn) SetWriteDeadline(t time.Time) error {
	if err := c.wr.setDeadline(t); err != nil {
		return c.opError("set write deadline", err)
	}
	return nil
}

// SetDeadline sets both deadlines.
func (c *PipeConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// Close interrupts a Read or Write in progress (they return net.ErrClosed),
// waits until the kernel is done with them, and closes this process's
// handle. It never disconnects the pipe instance: a copy of the handle
// duplicated into another process keeps the client connected.
func (c *PipeConn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	for _, op := range []*pipeOp{&c.rd, &c.wr} {
		op.dmu.Lock()
		_ = windows.SetEvent(op.wake)
		op.dmu.Unlock()
	}
	// Wait for operations in progress; they see closed and cancel.
	c.rd.mu.Lock()
	defer c.rd.mu.Unlock()
	c.wr.mu.Lock()
	defer c.wr.mu.Unlock()
	c.hmu.Lock()
	defer c.hmu.Unlock()
	var errs []error
	for _, op := range []*pipeOp{&c.rd, &c.wr} {
		op.dmu.Lock()
		op.wakeClosed = true
		errs = append(errs, windows.CloseHandle(op.wake), windows.CloseHandle(op.ev))
		op.dmu.Unlock()
	}
	errs = append(errs, windows.CloseHandle(c.h))
	if err := errors.Join(errs...); err != nil {
		return c.opError("close", err)
	}
	return nil
}

// withHandle runs fn with the pipe handle, which stays open until fn
// returns.
func (c *PipeConn) withHandle(fn func(h windows.Handle) error) error {
	c.hmu.RLock()
	defer c.hmu.RUnlock()
	if c.closed.Load() {
		return net.ErrClosed
	}
	return fn(c.h)
}

// Fd returns the pipe handle without side effects (the connection stays as
// it is). The value is valid until Close; prefer SyscallConn().Control,
// which keeps Close from running meanwhile.
func (c *PipeConn) Fd() uintptr { return uintptr(c.h) }

// SyscallConn gives access to the pipe handle: its Control method runs a
// function with the handle while Close waits, which is what DuplicateHandle
// needs. Its Read and Write methods are not supported.
func (c *PipeConn) SyscallConn() (syscall.RawConn, error) { return pipeRawConn{c}, nil }

type pipeRawConn struct{ c *PipeConn }

func (r pipeRawConn) Control(fn func(fd uintptr)) error {
	return r.c.withHandle(func(h windows.Handle) error { fn(uintptr(h)); return nil })
}

func (pipeRawConn) Read(func(fd uintptr) bool) error  { return ErrUnsupported }
func (pipeRawConn) Write(func(fd uintptr) bool) error { return ErrUnsupported }

// ClientPID returns the process id of the client, as the kernel recorded it
// when the client opened the pipe (GetNamedPipeClientProcessId).
func (c *PipeConn) ClientPID() (int, error) {
	var pid uint32
	err := c.withHandle(func(h windows.Handle) error { return windows.GetNamedPipeClientProcessId(h, &pid) })
	if err != nil {
		return 0, fmt.Errorf("ipc: GetNamedPipeClientProcessId: %w", err)
	}
	return int(pid), nil
}

// LocalAddr returns the pipe's name.
func (c *PipeConn) LocalAddr() net.Addr { return PipeAddr(c.name) }

// RemoteAddr returns the pipe's name too: a pipe client has no address of
// its own.
func (c *PipeConn) RemoteAddr() net.Addr { return PipeAddr(c.name) }

func (c *PipeConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "pipe", Addr: PipeAddr(c.name), Err: err}
}

// PipeAddr is the name of a named pipe, as a net.Addr.
type PipeAddr string

// Network returns "pipe".
func (PipeAddr) Network() string { return "pipe" }

func (a PipeAddr) String() string { return string(a) }

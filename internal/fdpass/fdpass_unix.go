//go:build linux || darwin

package fdpass

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Framing constants, mirroring PROTOCOL.md. fdpass only uses them to keep a
// descriptor bound to its frame; the wire package owns the format.
const (
	framingVersion = 0x01
	headerLen      = 5
	// MaxBody is the largest frame body the protocol allows (16 MiB). A
	// Receiver never accepts more, whatever limit it is given.
	MaxBody = 16 << 20
)

// maxFDsPerRead sizes the receive control buffer. A well-formed offer carries
// one descriptor; room for a few more means a sender that attaches two or
// three is seen (ErrTooManyFDs, all closed) rather than hidden behind
// MSG_CTRUNC, and anything larger still ends in a clean MSG_CTRUNC.
const maxFDsPerRead = 4

// SendWithFD writes msg, the complete bytes of one frame, and fd on c in ONE
// sendmsg, so the descriptor is bound to the frame's first byte (see the
// package comment for why that matters to the receiver).
//
// It sets c's write deadline to deadline (and leaves it set; the caller owns
// c's deadlines) and waits for writability through c.SyscallConn().Write, so
// the runtime poller handles EAGAIN; EINTR is retried.
//
// fdSent reports whether the descriptor reached the peer's socket: it becomes
// true as soon as the kernel accepted any byte of the sendmsg, because the
// kernel attaches SCM_RIGHTS to the first segment it queues. On a short write
// SendWithFD writes the remainder (without the descriptor) before returning.
// If that fails, fdSent is true and err is non-nil: the peer has the
// descriptor but only part of the frame, so the connection must be dropped.
// fd itself stays owned by the caller either way (the kernel sends a copy).
//
// SendWithFD must not run concurrently with other writes on c.
func SendWithFD(c *net.UnixConn, msg []byte, fd int, deadline time.Time) (fdSent bool, err error) {
	if err := checkFrame(msg); err != nil {
		return false, err
	}
	if fd < 0 {
		return false, ErrBadFD
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("fdpass: send: %w", err)
	}
	if err := c.SetWriteDeadline(deadline); err != nil {
		return false, fmt.Errorf("fdpass: send: %w", err)
	}
	oob := unix.UnixRights(fd)
	written := 0
	var sysErr error
	werr := rc.Write(func(s uintptr) bool {
		for written < len(msg) {
			var n int
			var err error
			if written == 0 {
				n, err = unix.SendmsgN(int(s), msg, oob, nil, sendFlags)
			} else {
				// The descriptor already went with the first segment; sending
				// it again would hand the peer a second copy.
				n, err = unix.SendmsgN(int(s), msg[written:], nil, nil, sendFlags)
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				return false // let the poller wait, bounded by the deadline
			case err != nil:
				sysErr = os.NewSyscallError("sendmsg", err)
				return true
			case n == 0:
				sysErr = io.ErrShortWrite // never loop on a socket that takes nothing
				return true
			}
			written += n
		}
		return true
	})
	fdSent = written > 0
	if werr == nil {
		werr = sysErr
	}
	if werr != nil {
		return fdSent, fmt.Errorf("fdpass: send (%d of %d bytes written): %w", written, len(msg), werr)
	}
	return true, nil
}

// checkFrame verifies that msg is exactly one frame, so the byte the
// descriptor is bound to is a frame's first byte and the receiver can find it.
func checkFrame(msg []byte) error {
	if len(msg) < headerLen {
		return fmt.Errorf("%w: %d bytes, shorter than a header", ErrInvalidFrame, len(msg))
	}
	if msg[0] != framingVersion {
		return fmt.Errorf("%w: %w (0x%02x)", ErrInvalidFrame, ErrBadFramingVersion, msg[0])
	}
	n := binary.LittleEndian.Uint32(msg[1:headerLen])
	if n > MaxBody {
		return fmt.Errorf("%w: %w (%d bytes)", ErrInvalidFrame, ErrFrameTooLarge, n)
	}
	if uint64(n) != uint64(len(msg)-headerLen) {
		return fmt.Errorf("%w: header announces %d body bytes, message has %d", ErrInvalidFrame, n, len(msg)-headerLen)
	}
	return nil
}

// noMessage is what Next returns with an error: FD is -1, never 0, so a
// caller that closes m.FD unconditionally does not close its stdin.
var noMessage = Message{FD: -1}

// attachment is what a frame received in the way of descriptors.
type attachment struct {
	fd  int   // -1 when none
	err error // first reason descriptors were dropped
}

var noAttachment = attachment{fd: -1}

// fail drops the frame's descriptor (if any) and records why.
func (a *attachment) fail(err error) {
	if a.fd >= 0 {
		closeFD(a.fd)
		a.fd = -1
	}
	if a.err == nil {
		a.err = err
	}
}

// release closes a held descriptor without recording an error.
func (a *attachment) release() {
	if a.fd >= 0 {
		closeFD(a.fd)
	}
	*a = noAttachment
}

// Receiver reads frames from a control connection with recvmsg
// (MSG_CMSG_CLOEXEC on Linux) and binds each received descriptor to the
// frame whose first byte arrived in the same recvmsg. It owns the read side
// of the connection: nothing else may read from it.
//
// Next must not be called concurrently with itself. Close may be called from
// any goroutine; it does not close the connection, so to interrupt a Next
// that is blocked, close the connection or set a read deadline.
//
// The control buffer holds a few descriptors and nothing else: do not
// enable SO_PASSCRED on the connection (peer credentials come from
// SO_PEERCRED / LOCAL_PEERPID instead), or an SCM_CREDENTIALS message on
// every read would crowd out the descriptors.
type Receiver struct {
	c       *net.UnixConn
	rc      syscall.RawConn
	rcErr   error
	maxBody int
	oob     []byte

	hdr     [headerLen]byte // header of the frame being read
	hdrN    int
	haveHdr bool
	bodyLen int
	body    []byte // len = body bytes received so far

	spill  [headerLen]byte // the next frame's header bytes read with this frame's body
	spillN int

	fatal error // sticky: the stream can no longer be trusted

	iov    [2][]byte
	rd     readResult
	readFn func(uintptr) bool // r.readOnce, bound once
	idle   func()             // see OnIdle

	mu     sync.Mutex // guards cur, next and closed against Close
	cur    attachment // descriptors for the frame being read
	next   attachment // descriptors for the frame whose first byte is in spill
	closed bool
}

// errReceiverClosed is returned by Next after Close.
var errReceiverClosed = fmt.Errorf("fdpass: receiver closed: %w", net.ErrClosed)

// NewReceiver returns a Receiver reading frames from c. maxBody caps frame
// bodies; values <= 0 or above MaxBody mean MaxBody.
func NewReceiver(c *net.UnixConn, maxBody int) *Receiver {
	if maxBody <= 0 || maxBody > MaxBody {
		maxBody = MaxBody
	}
	r := &Receiver{
		c:       c,
		maxBody: maxBody,
		oob:     make([]byte, unix.CmsgSpace(maxFDsPerRead*4)),
		cur:     noAttachment,
		next:    noAttachment,
	}
	r.readFn = r.readOnce
	r.rc, r.rcErr = c.SyscallConn()
	return r
}

// OnIdle sets fn to run each time Next has read everything the peer sent
// so far and is about to wait for more: on Next's goroutine, inside the
// read (fn may write to the connection, not read from it). It is the
// moment to write what the caller batched while frames kept arriving,
// without a timer: frames that arrive together are answered together, and
// a lone frame's answer goes out one recvmsg later. Set it before the first
// Next.
func (r *Receiver) OnIdle(fn func()) { r.idle = fn }

// initialBodyCap bounds what a header alone makes the Receiver allocate, so a
// peer announcing 16 MiB and sending nothing costs 64 KiB, not 16 MiB.
const initialBodyCap = 64 << 10

// Next blocks until the next complete frame has arrived and returns it,
// honoring c's read deadline (the wait goes through c.SyscallConn().Read).
//
// A deadline error (errors.Is(err, os.ErrDeadlineExceeded)) is not fatal:
// the partial frame is kept and the next call continues it. Framing errors
// (ErrBadFramingVersion, ErrFrameTooLarge), EOF (io.EOF between frames,
// io.ErrUnexpectedEOF inside one) and socket errors are fatal: the same error
// is returned from then on and every descriptor the Receiver held is closed.
func (r *Receiver) Next() (Message, error) {
	if r.rcErr != nil {
		return noMessage, fmt.Errorf("fdpass: receive: %w", r.rcErr)
	}
	for {
		if r.fatal != nil {
			return noMessage, r.fatal
		}
		if r.isClosed() {
			return noMessage, errReceiverClosed
		}
		if !r.haveHdr {
			if r.hdrN > 0 && r.hdr[0] != framingVersion {
				// Fail on the first byte rather than wait for a peer that is
				// not speaking this protocol to send four more.
				return noMessage, r.setFatal(fmt.Errorf("%w: 0x%02x", ErrBadFramingVersion, r.hdr[0]))
			}
			if r.hdrN < headerLen {
				// Only the header: the body length is unknown, so reading
				// further could take in the next frame's first byte as well.
				startsFrame := r.hdrN == 0
				n, fds, truncated, err := r.recv(r.hdr[r.hdrN:], nil)
				if err != nil {
					return noMessage, err
				}
				if !r.attach(&r.cur, fds, truncated, startsFrame) {
					return noMessage, errReceiverClosed
				}
				r.hdrN += n
				continue
			}
			if err := r.parseHeader(); err != nil {
				return noMessage, r.setFatal(err)
			}
		}
		if len(r.body) == r.bodyLen {
			return r.deliver()
		}
		if len(r.body) == cap(r.body) {
			r.body = growBody(r.body, r.bodyLen)
		}
		// The rest of this body (as far as the buffer reaches) and, when the
		// buffer reaches the frame's end, at most the next frame's header:
		// the next frame's first byte is then the only frame start in the read.
		dst := r.body[len(r.body):cap(r.body)]
		var spill []byte
		if cap(r.body) == r.bodyLen {
			spill = r.spill[:]
		}
		n, fds, truncated, err := r.recv(dst, spill)
		if err != nil {
			return noMessage, err
		}
		var ok bool
		if n > len(dst) {
			// The read reached the next frame's first byte: that is the only
			// frame start in it, so that is where its descriptor belongs.
			r.body = r.body[:r.bodyLen]
			r.spillN = n - len(dst)
			ok = r.attach(&r.next, fds, truncated, true)
		} else {
			// No frame starts in this read: a descriptor here was not bound
			// to a frame's first byte by its sender.
			r.body = r.body[:len(r.body)+n]
			ok = r.attach(&r.cur, fds, truncated, false)
		}
		if !ok {
			return noMessage, errReceiverClosed
		}
	}
}

// parseHeader validates the complete header in r.hdr (its version byte was
// checked as soon as it arrived) and prepares the body.
func (r *Receiver) parseHeader() error {
	n := binary.LittleEndian.Uint32(r.hdr[1:])
	if uint64(n) > uint64(r.maxBody) {
		return fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, r.maxBody)
	}
	r.haveHdr = true
	r.bodyLen = int(n)
	r.body = make([]byte, 0, min(r.bodyLen, initialBodyCap))
	return nil
}

// growBody doubles b's capacity, never past limit.
func growBody(b []byte, limit int) []byte {
	nb := make([]byte, len(b), min(max(2*cap(b), 512), limit))
	copy(nb, b)
	return nb
}

// deliver hands out the completed frame and makes the spilled bytes (and
// their descriptor) the start of the next one.
func (r *Receiver) deliver() (Message, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return noMessage, errReceiverClosed
	}
	m := Message{Body: r.body, FD: r.cur.fd, Err: r.cur.err}
	r.cur, r.next = r.next, noAttachment
	r.mu.Unlock()

	r.body = nil
	r.bodyLen = 0
	r.haveHdr = false
	r.hdrN = copy(r.hdr[:], r.spill[:r.spillN])
	r.spillN = 0
	return m, nil
}

// attach binds the descriptors of one read to a frame, or closes them and
// records why. aligned says whether that frame's first byte was in the read.
// It reports false (after closing fds) when the Receiver has been closed.
func (r *Receiver) attach(a *attachment, fds []int, truncated, aligned bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		closeFDs(fds)
		return false
	}
	switch {
	case truncated:
		closeFDs(fds)
		a.fail(ErrControlTruncated)
	case len(fds) == 0:
	case !aligned:
		closeFDs(fds)
		a.fail(ErrFDMisaligned)
	case len(fds) > 1 || a.fd >= 0 || a.err != nil:
		// Only one read can contain a frame's first byte, so the last two
		// conditions cannot happen; they are here so that, if they ever
		// did, nothing leaks and the first error is kept.
		closeFDs(fds)
		a.fail(ErrTooManyFDs)
	default:
		a.fd = fds[0]
	}
	return true
}

// recv does one recvmsg into a then b (b may be nil) through the runtime
// poller. It returns the bytes read and the descriptors that came with them.
// On a fatal condition it records it and returns the error.
func (r *Receiver) recv(a, b []byte) (n int, fds []int, truncated bool, err error) {
	r.iov[0], r.iov[1] = a, b
	r.rd = readResult{iov: r.iov[:1]}
	if b != nil {
		r.rd.iov = r.iov[:2]
	}
	rerr := r.rc.Read(r.readFn)
	rd := r.rd
	r.iov, r.rd = [2][]byte{}, readResult{} // drop references to caller buffers
	if rerr != nil {
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			return 0, nil, false, fmt.Errorf("fdpass: receive: %w", rerr)
		}
		return 0, nil, false, r.setFatal(fmt.Errorf("fdpass: receive: %w", rerr))
	}
	if rd.err != nil {
		return 0, nil, false, r.setFatal(fmt.Errorf("fdpass: receive: %w", os.NewSyscallError("recvmsg", rd.err)))
	}
	if rd.n == 0 {
		closeFDs(rd.fds)
		if r.hdrN == 0 && !r.haveHdr {
			return 0, nil, false, r.setFatal(io.EOF)
		}
		return 0, nil, false, r.setFatal(fmt.Errorf("fdpass: receive: %w", io.ErrUnexpectedEOF))
	}
	return rd.n, rd.fds, rd.truncated, nil
}

// readResult carries one recvmsg's arguments and results through the
// RawConn.Read callback. It lives in the Receiver, and the callback is bound
// once in NewReceiver, so a read allocates nothing for the closure.
type readResult struct {
	iov       [][]byte
	n         int
	fds       []int
	truncated bool
	err       error
}

// readOnce is the RawConn.Read callback: one non-blocking recvmsg, EINTR
// retried, EAGAIN handed back to the poller.
func (r *Receiver) readOnce(s uintptr) bool {
	for {
		r.rd.n, r.rd.fds, r.rd.truncated, r.rd.err = recvFDs(int(s), r.rd.iov, r.oob)
		switch r.rd.err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if r.idle != nil {
				r.idle()
			}
			return false // wait for readability, bounded by the read deadline
		}
		return true
	}
}

// setFatal records a fatal error, drops every descriptor held, and returns err.
func (r *Receiver) setFatal(err error) error {
	r.fatal = err
	r.mu.Lock()
	r.cur.release()
	r.next.release()
	r.mu.Unlock()
	return err
}

func (r *Receiver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close releases every descriptor the Receiver still holds (one that arrived
// for a frame not yet complete). It does not close the connection. Next
// returns an error wrapping net.ErrClosed afterwards.
func (r *Receiver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.cur.release()
	r.next.release()
	return nil
}

// parseRights returns the descriptors in every SCM_RIGHTS message of a
// control buffer. It is deliberately forgiving: it never fails, because a
// parse error would otherwise leak descriptors the kernel already installed.
// A malformed header ends the walk; a short SCM_RIGHTS payload yields the
// whole descriptors it does contain.
func parseRights(oob []byte) []int {
	var fds []int
	hdrLen := unix.CmsgLen(0)
	for len(oob) >= hdrLen {
		// Copied out rather than cast in place: oob need not be aligned.
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), oob)
		l := int(h.Len)
		if l < hdrLen {
			break
		}
		if l > len(oob) {
			l = len(oob) // truncated by the kernel (MSG_CTRUNC)
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_RIGHTS {
			data := oob[hdrLen:l]
			for len(data) >= 4 {
				fds = append(fds, int(int32(binary.NativeEndian.Uint32(data))))
				data = data[4:]
			}
		}
		next := unix.CmsgSpace(int(h.Len) - hdrLen)
		if next <= 0 || next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return fds
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		closeFD(fd)
	}
}

// closeFD closes a descriptor this package received. EINTR is not retried:
// on Linux and macOS the descriptor is released even when close reports it.
func closeFD(fd int) {
	if fd >= 0 {
		_ = unix.Close(fd)
	}
}

// WithFD runs fn with the descriptor of a live connection, inside
// c.SyscallConn().Control, so the descriptor stays valid (the connection
// cannot be closed underneath) and the connection stays non-blocking: never
// File() or Fd(), which would dup it or switch it to blocking mode. fn must
// not keep fd after it returns.
func WithFD(c syscall.Conn, fn func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("fdpass: %w", err)
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return fmt.Errorf("fdpass: %w", err)
	}
	return fnErr
}

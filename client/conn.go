package client

import (
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Route says how a Conn reaches its backend.
type Route uint8

// The routes of a Conn; see the package documentation.
const (
	// Handoff: the broker handed this connection to the backend.
	Handoff Route = iota + 1
	// Reconnect: the client dialed backend_pipe after the broker's reply.
	Reconnect
	// Direct: the client dialed a cached backend_pipe (HelloSkip) without
	// talking to the broker.
	Direct
)

// String returns "handoff", "reconnect" or "direct".
func (r Route) String() string {
	switch r {
	case Handoff:
		return "handoff"
	case Reconnect:
		return "reconnect"
	case Direct:
		return "direct"
	}
	return "Route(" + strconv.Itoa(int(r)) + ")"
}

// Conn is a connection to a backend, obtained from Dial. It is a net.Conn
// over a Unix socket (on Windows, the client end of a named pipe); on the
// handoff route its RemoteAddr is the broker's endpoint, because that is
// the connection the backend adopted.
//
// Bytes the backend sent right after its handoff-ready event, which Dial read
// ahead, are returned by the first Read calls before anything else.
//
// # Settling the route on first use
//
// Unless Dial was given AwaitReady, a Dial that negotiated a handoff returns
// before the backend's ready event has arrived. Writes go straight into the
// socket (the backend reads them once it has adopted it), and the client
// keeps a copy of them. The first Read, Route, CloseRead or SyscallConn
// settles the route: it reads the ready event and adopts the socket, or, on
// EOF, a refused or mismatched event or the ready timeout, reconnects to
// backend_pipe and replays every byte written so far. That replay is safe
// for the reason EarlyData is (the backend writes the ready event before its
// application can read a byte). Writes beyond maxReplay bytes before the
// route is settled wait for it. If the reconnect fails too, the error
// (matching ErrBackendUnavailable) is returned by that call and every later
// one.
type Conn struct {
	uc osConn // replaced only while adopt != nil, under mu

	// settled is true once no adoption is pending; the hot paths check it
	// without the mutex.
	settled atomic.Bool
	adopt   *adoption // guarded by mu
	failed  error     // guarded by mu; sticky error of a failed settlement

	// pending holds read-ahead application bytes; hasPending lets Read skip
	// the mutex once they are drained.
	hasPending atomic.Bool
	mu         sync.Mutex
	pending    []byte

	// Guarded by mu until settled: a fallback that asks the broker again
	// replaces all four.
	route         Route
	connID        uint64
	backendPipe   string
	daemonVersion string
}

var _ net.Conn = (*Conn)(nil)

func newConn(uc osConn, route Route, connID uint64, pipe, daemonVersion string, pending []byte) *Conn {
	c := &Conn{uc: uc, route: route, connID: connID, backendPipe: pipe, daemonVersion: daemonVersion}
	c.settled.Store(true)
	if len(pending) > 0 {
		c.pending = pending
		c.hasPending.Store(true)
	}
	return c
}

// settle settles the route if it is still open; see Conn and
// settleLocked.
func (c *Conn) settle() error {
	if c.settled.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settleLocked(false)
}

func (c *Conn) finishLocked(r Route, err error) {
	c.route = r
	c.failed = err
	c.adopt = nil
	c.settled.Store(true)
}

// Route reports how this connection reaches its backend, settling it first
// if needed (see Conn).
func (c *Conn) Route() Route {
	_ = c.settle()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.route
}

// ConnectionID is the broker-assigned connection id from Negotiated; 0 on
// the direct route, where no broker was involved. After a fallback that had
// to ask the broker again, it is the id of that second Hello.
func (c *Conn) ConnectionID() uint64 {
	if c.settled.Load() {
		return c.connID
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connID
}

// BackendPipe is the backend's own endpoint (from Negotiated or, on the
// direct route, from the hello-skip cache).
func (c *Conn) BackendPipe() string {
	if c.settled.Load() {
		return c.backendPipe
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backendPipe
}

// DaemonVersion is the backend's version as the broker reported it in
// Negotiated (cached with the entry on the direct route).
func (c *Conn) DaemonVersion() string {
	if c.settled.Load() {
		return c.daemonVersion
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.daemonVersion
}

// Read returns read-ahead bytes first, then reads from the socket.
func (c *Conn) Read(b []byte) (int, error) {
	if !c.settled.Load() {
		if err := c.settle(); err != nil {
			return 0, err
		}
	}
	if c.hasPending.Load() {
		c.mu.Lock()
		if len(c.pending) > 0 {
			n := copy(b, c.pending)
			c.pending = c.pending[n:]
			if len(c.pending) == 0 {
				c.pending = nil
				c.hasPending.Store(false)
			}
			c.mu.Unlock()
			return n, nil
		}
		c.mu.Unlock()
	}
	if c.failed != nil {
		return 0, c.failed
	}
	return c.uc.Read(b)
}

// Write writes to the backend. While the route is not settled it also
// keeps a copy for the replay (see Conn).
func (c *Conn) Write(b []byte) (int, error) {
	if !c.settled.Load() {
		c.mu.Lock()
		if a := c.adopt; a != nil && len(a.sent)+len(b) <= maxReplay {
			a.sent = append(a.sent, b...)
			n, err := c.uc.Write(b)
			if err != nil {
				// The socket is gone before the handoff settled. If the
				// route falls back, the replay on the reconnect route
				// carries b; if the backend had adopted the socket and
				// then closed it, b is lost and the write error stands.
				werr := err
				if err = c.settleLocked(false); err == nil && c.route == Handoff {
					err = werr
				} else if err == nil {
					n = len(b)
				}
			}
			c.mu.Unlock()
			if err != nil {
				return 0, err
			}
			return n, nil
		}
		err := c.settleLocked(false)
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	if c.failed != nil {
		return 0, c.failed
	}
	return c.uc.Write(b)
}

// Close closes the connection and drops unread read-ahead bytes.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = nil
	c.hasPending.Store(false)
	if c.adopt != nil {
		c.finishLocked(c.route, net.ErrClosed)
	}
	return c.uc.Close()
}

// CloseWrite shuts down the writing side (the backend reads EOF). On
// Windows it fails with an error matching errors.ErrUnsupported and
// changes nothing: a byte-mode named pipe has no half-close (see the
// package documentation).
func (c *Conn) CloseWrite() error {
	if !c.settled.Load() {
		c.mu.Lock()
		if a := c.adopt; a != nil {
			err := c.uc.CloseWrite()
			// The replay on the reconnect route half-closes too, unless
			// half-closing is what this platform cannot do.
			a.closedWrite = err == nil || !errors.Is(err, errors.ErrUnsupported)
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
	}
	return c.uc.CloseWrite()
}

// CloseRead shuts down the reading side of the socket. Read-ahead bytes not
// yet read are still returned by Read. On Windows it fails with an error
// matching errors.ErrUnsupported.
func (c *Conn) CloseRead() error {
	if err := c.settle(); err != nil {
		return err
	}
	return c.uc.CloseRead()
}

// current returns the socket, which may still change while the route is
// being settled.
func (c *Conn) current() osConn {
	if c.settled.Load() {
		return c.uc
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.uc
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.current().LocalAddr() }

// RemoteAddr returns the remote address (the broker's socket on the handoff
// route, backend_pipe otherwise).
func (c *Conn) RemoteAddr() net.Addr { return c.current().RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline. Read-ahead bytes are returned
// regardless of it. While the route is being settled it also bounds the wait
// for the ready event (the ready timeout still applies).
func (c *Conn) SetReadDeadline(t time.Time) error {
	if !c.settled.Load() {
		c.mu.Lock()
		if a := c.adopt; a != nil {
			a.readDL = t
			err := c.uc.SetReadDeadline(t)
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
	}
	return c.uc.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if !c.settled.Load() {
		c.mu.Lock()
		if a := c.adopt; a != nil {
			a.writeDL = t
			err := c.uc.SetWriteDeadline(t)
			c.mu.Unlock()
			return err
		}
		c.mu.Unlock()
	}
	return c.uc.SetWriteDeadline(t)
}

// SyscallConn gives raw access to the socket, for example to pass it on.
// It settles the route first. Mind read-ahead bytes: Read them first. On
// Windows only its Control works (it sees the pipe handle); Read and Write
// fail with errors.ErrUnsupported.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if err := c.settle(); err != nil {
		return nil, err
	}
	return c.uc.SyscallConn()
}

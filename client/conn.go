package client

import (
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
// over a Unix socket; on the handoff route its RemoteAddr is the broker's
// socket, because that is the socket the backend adopted.
//
// Bytes the backend sent right after its handoff-ready event, which Dial read
// ahead, are returned by the first Read calls before anything else.
type Conn struct {
	uc *net.UnixConn

	// pending holds read-ahead application bytes; hasPending lets Read skip
	// the mutex once they are drained.
	hasPending atomic.Bool
	mu         sync.Mutex
	pending    []byte

	route         Route
	connID        uint64
	backendPipe   string
	daemonVersion string
}

var _ net.Conn = (*Conn)(nil)

func newConn(uc *net.UnixConn, route Route, connID uint64, pipe, daemonVersion string, pending []byte) *Conn {
	c := &Conn{uc: uc, route: route, connID: connID, backendPipe: pipe, daemonVersion: daemonVersion}
	if len(pending) > 0 {
		c.pending = pending
		c.hasPending.Store(true)
	}
	return c
}

// Route reports how this connection reaches its backend.
func (c *Conn) Route() Route { return c.route }

// ConnectionID is the broker-assigned connection id from Negotiated; 0 on
// the direct route, where no broker was involved.
func (c *Conn) ConnectionID() uint64 { return c.connID }

// BackendPipe is the backend's own endpoint (from Negotiated or, on the
// direct route, from the hello-skip cache).
func (c *Conn) BackendPipe() string { return c.backendPipe }

// DaemonVersion is the backend's version as the broker reported it in
// Negotiated (cached with the entry on the direct route).
func (c *Conn) DaemonVersion() string { return c.daemonVersion }

// Read returns read-ahead bytes first, then reads from the socket.
func (c *Conn) Read(b []byte) (int, error) {
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
	return c.uc.Read(b)
}

// Write writes to the backend.
func (c *Conn) Write(b []byte) (int, error) { return c.uc.Write(b) }

// Close closes the connection and drops unread read-ahead bytes.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.pending = nil
	c.hasPending.Store(false)
	c.mu.Unlock()
	return c.uc.Close()
}

// CloseWrite shuts down the writing side (the backend reads EOF).
func (c *Conn) CloseWrite() error { return c.uc.CloseWrite() }

// CloseRead shuts down the reading side of the socket. Read-ahead bytes not
// yet read are still returned by Read.
func (c *Conn) CloseRead() error { return c.uc.CloseRead() }

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.uc.LocalAddr() }

// RemoteAddr returns the remote address (the broker's socket on the handoff
// route, backend_pipe otherwise).
func (c *Conn) RemoteAddr() net.Addr { return c.uc.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.uc.SetDeadline(t) }

// SetReadDeadline sets the read deadline. Read-ahead bytes are returned
// regardless of it.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.uc.SetWriteDeadline(t) }

// SyscallConn gives raw access to the socket, for example to pass it on.
// Mind read-ahead bytes: Read them first.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.uc.SyscallConn() }

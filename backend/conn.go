package backend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// Conn is a connection Accept returned (handed off or direct). The
// listener counts it as live from the moment it has it until Close: that
// count is what the broker is told, so that it never stops a backend for
// idleness while a client is connected, and what Shutdown waits for.
//
// Reads and writes go straight to the underlying connection; only Close
// does anything more (one atomic operation). A program must close every
// connection it accepted, or the listener counts it as live for ever.
type Conn struct {
	net.Conn
	l      *Listener
	closed atomic.Bool
}

var _ net.Conn = (*Conn)(nil)

// Close closes the connection and stops counting it as live. Later calls
// return the underlying connection's error and change nothing else.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.untrack()
	}
	return err
}

// CloseWrite shuts down the writing side (the client reads EOF), when the
// underlying connection can.
func (c *Conn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return fmt.Errorf("backend: %T cannot close its writing side: %w", c.Conn, errors.ErrUnsupported)
}

// CloseRead shuts down the reading side, when the underlying connection
// can.
func (c *Conn) CloseRead() error {
	if hc, ok := c.Conn.(interface{ CloseRead() error }); ok {
		return hc.CloseRead()
	}
	return fmt.Errorf("backend: %T cannot close its reading side: %w", c.Conn, errors.ErrUnsupported)
}

// SyscallConn gives raw access to the underlying connection (see
// syscall.Conn), when it has one.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("backend: %T has no raw connection: %w", c.Conn, errors.ErrUnsupported)
}

// NetConn returns the underlying connection, for code that needs its
// concrete type: on Unix a *net.UnixConn for a connection the listener
// accepted, and for a handed-off one the adopted socket, which is not a
// *net.UnixConn (making one costs seven system calls per handoff) but
// has the same Read, Write, deadline, half-close and SyscallConn behaviour
// and errors; on Windows a named-pipe connection. Close the Conn, not what
// NetConn returns: only the Conn's Close ends the count of live
// connections.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Reporting of live connections to the broker.
const (
	// reportGap is the least time between two reports: a stream of
	// short connections, each making the backend busy and idle again,
	// costs one report per gap rather than two frames per connection.
	reportGap = 100 * time.Millisecond
	// countRefresh is how often a busy backend reports a changed count
	// (for `portier status` and the live-connection gauge); becoming busy
	// or idle is reported within reportGap.
	countRefresh = time.Second
)

// track wraps a connection the listener hands to Accept, counting it as
// live until its Close.
func (l *Listener) track(c net.Conn) *Conn {
	if l.live.Add(1) == 1 {
		l.kickReport() // idle -> busy
	}
	return &Conn{Conn: c, l: l}
}

// untrack counts one tracked connection closed.
func (l *Listener) untrack() {
	if l.live.Add(-1) != 0 {
		return
	}
	l.kickReport() // busy -> idle
	l.drainMu.Lock()
	if l.drained != nil && l.live.Load() == 0 {
		close(l.drained)
		l.drained = nil
	}
	l.drainMu.Unlock()
}

// kickReport asks the report loop to tell the broker the current count.
// It never blocks: a pending kick already covers this one.
func (l *Listener) kickReport() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// LiveConnections is the number of connections the listener has yielded or
// holds for Accept and that have not been closed.
func (l *Listener) LiveConnections() int { return int(l.live.Load()) }

// Shutdown stops the listener and then waits until every connection it
// yielded has been closed, or ctx ends (then it returns ctx's error and
// the connections stay open), in the spirit of http.Server.Shutdown. It
// stops the listener like Close, except that handed-off connections still
// waiting for Accept are left for Accept, which returns them before it
// reports net.ErrClosed.
//
// A backend's accept loop ends when the broker asks it to quiesce (it was
// idle, its binary or definition changed, `portier stop`); calling
// Shutdown then, before the program exits, lets the clients it is serving
// finish instead of cutting them off:
//
//	for c, err := l.Accept(); err == nil; c, err = l.Accept() {
//		go serve(c) // closes c when done
//	}
//	return l.Shutdown(context.Background())
func (l *Listener) Shutdown(ctx context.Context) error {
	l.stop()
	for {
		l.drainMu.Lock()
		if l.live.Load() == 0 {
			l.drainMu.Unlock()
			return nil
		}
		if l.drained == nil {
			l.drained = make(chan struct{})
		}
		drained := l.drained
		l.drainMu.Unlock()
		select {
		case <-drained:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// reportLoop tells the broker how many connections are live: after every
// (re-)registration and whenever the backend becomes busy or idle (at most
// one report per reportGap), and while busy when the count changed, at
// most once per countRefresh.
func (l *Listener) reportLoop() {
	defer l.wg.Done()
	var refresh *time.Ticker
	var refreshC <-chan time.Time
	defer func() {
		if refresh != nil {
			refresh.Stop()
		}
	}()
	sent := int64(-1)
	for {
		kicked := false
		select {
		case <-l.kick:
			kicked = true
		case <-refreshC:
		case <-l.done:
			return
		}
		n := l.live.Load()
		if kicked || n != sent {
			if l.report(n) {
				sent = n
			}
		}
		switch {
		case n > 0 && refresh == nil:
			refresh = time.NewTicker(countRefresh)
			refreshC = refresh.C
		case n == 0 && refresh != nil:
			refresh.Stop()
			refresh, refreshC = nil, nil
		}
		if !l.sleep(reportGap) {
			return
		}
	}
}

// report sends one ConnectionReport on the current control connection; it
// reports false when there is none (between brokers: the next
// registration kicks a report) or the write failed.
func (l *Listener) report(n int64) bool {
	l.mu.Lock()
	c := l.ctrl
	l.mu.Unlock()
	if c == nil {
		return false
	}
	f, err := wire.NewEvent(wire.ProtocolBackendControl, 0, &pb.BackendControl{Msg: &pb.BackendControl_ConnectionReport{
		ConnectionReport: &pb.ConnectionReport{LiveConnections: uint32(min(max(n, 0), math.MaxUint32))},
	}}, nil)
	if err != nil {
		return false
	}
	return c.send(f) == nil
}

//go:build unix

package broker

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/portier/portier/internal/ipc"
)

// acceptedConn is a connection the broker accepted: on Unix a Unix domain
// socket, whose descriptor SCM_RIGHTS can carry to a backend.
type acceptedConn = *net.UnixConn

// listen binds the broker's socket, or adopts the handed-over one.
func (b *Broker) listen() (*ipc.Listener, error) {
	if b.cfg.Listener != nil {
		return ipc.AdoptSingleton(b.cfg.Listener)
	}
	return ipc.ListenSingleton(b.cfg.Socket)
}

// fdReserve is one descriptor the broker holds back, so that it can still
// accept a connection (and tell it FD_PRESSURE, or serve an admin request)
// when accept fails for lack of descriptors.
type fdReserve struct {
	mu     sync.Mutex
	f      *os.File
	closed bool
	none   bool // the null device cannot be opened at all: no reserve
}

// take holds the reserve again if it is out. It reports false only while
// it is out and cannot be taken back for lack of descriptors.
func (r *fdReserve) take() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f != nil || r.closed || r.none {
		return true
	}
	f, err := os.Open(os.DevNull)
	switch {
	case err == nil:
		r.f = f
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return false
	default:
		// Not for lack of descriptors, so waiting does not help: the
		// broker goes on without a reserve (and without FD_PRESSURE
		// answers).
		r.none = true
	}
	return true
}

// spend frees the reserve's descriptor for the caller's next accept. It
// reports false when there is none to free.
func (r *fdReserve) spend() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return false
	}
	r.f.Close()
	r.f = nil
	return true
}

// close releases the reserve for good.
func (r *fdReserve) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// acceptLoop accepts until the listener closes. When accept fails for lack
// of descriptors, acceptPressured spends the reserve descriptor on the next
// connection, whose first frame a goroutine of its own reads and answers:
// a Hello with FD_PRESSURE, an admin request as usual (see serveConn). The
// pressure flag (which also turns handoffs into reconnects) stays until
// accepts succeed again.
//
// Nothing is accepted while the reserve is out. The descriptor that frees
// next (usually the pressured connection's own, which its goroutine takes
// back the moment it has closed it) must become the reserve again, not the
// next connection's: otherwise, in a burst, the accept loop takes every
// freed descriptor, the answers alternate between FD_PRESSURE and
// Negotiated until the reserve is gone, and the next squeeze leaves clients
// waiting without an answer. The pause lasts while no descriptor at all is
// free, when accept would fail anyway.
func (b *Broker) acceptLoop(ln *ipc.Listener) {
	for {
		if !b.reserve.take() {
			if b.shutting.Load() {
				return // Serve has closed the listener
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				if !b.fdPressure.Swap(true) {
					b.log.Warn("out of file descriptors; answering Hellos with FD_PRESSURE", "err", err)
				}
				b.metrics.fdPressure.Inc()
				if !b.acceptPressured(ln) {
					return
				}
				continue
			}
			b.log.Warn("accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if b.fdPressure.Swap(false) {
			b.log.Info("file descriptors available again")
		}
		b.dispatch(c)
	}
}

// acceptPressured handles an accept that failed for lack of descriptors.
// accept fails so whether or not a connection is queued (the descriptor is
// allocated first), so it waits for one before it frees the reserve: a
// reserve freed early is a free descriptor anyone in the process may take
// meanwhile. Then it tries a plain accept once more (descriptors may have
// freed while it waited), and only if that fails too it spends the reserve
// on the connection and answers it on a goroutine of its own. It reports
// false once the listener is closed.
func (b *Broker) acceptPressured(ln *ipc.Listener) bool {
	if err := ln.WaitPending(); err != nil {
		if errors.Is(err, net.ErrClosed) {
			return false
		}
		b.log.Warn("waiting for a connection failed", "err", err)
		time.Sleep(10 * time.Millisecond)
		return true
	}
	c, err := ln.AcceptUnix()
	if err == nil {
		if b.fdPressure.Swap(false) {
			b.log.Info("file descriptors available again")
		}
		b.dispatch(c)
		return true
	}
	if !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
		return !errors.Is(err, net.ErrClosed)
	}
	if !b.reserve.spend() {
		// No reserve on this system: let descriptors free up rather than
		// spin.
		time.Sleep(10 * time.Millisecond)
		return true
	}
	c, err = ln.AcceptUnix()
	if err != nil {
		// Someone else took the freed descriptor; the accept loop waits
		// for the reserve to come back.
		return !errors.Is(err, net.ErrClosed)
	}
	b.conns.Add(1)
	go func() {
		defer b.conns.Done()
		b.serveConn(c, true)
		b.reserve.take()
	}()
	return true
}

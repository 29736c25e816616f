package broker

import (
	"errors"
	"sync"
	"time"
)

// errNoHangupWatch: the platform cannot watch parked sockets for hangups.
var errNoHangupWatch = errors.New("broker: no hangup watch on this platform")

// hangupWatch notices clients that leave while their Hello is parked (its
// backend is still starting), without a goroutine per parked Hello: the
// platform provides newHangupWatch in hangup_<os>.go (one epoll set on
// Linux, whose single loop sits in the runtime's poller) or nothing
// (errNoHangupWatch: a parked Hello then keeps its socket until its backend
// is ready or its deadline passes).
type hangupWatch interface {
	// add watches c, which must be open. gone runs once, on the watch's
	// goroutine, when c's peer has closed it (a half-close is not leaving:
	// such a client may still read its answer). ok is false when c could
	// not be watched.
	add(c acceptedConn, gone func()) (key uint64, ok bool)
	// remove stops watching c; call it before c is closed or handed off.
	remove(c acceptedConn, key uint64)
	// run serves the watch until close.
	run()
	close()
}

// parkedHello is a Hello waiting for its backend to become ready. Exactly
// one of serve (the backend is ready, or failed to start), expire (the
// Hello's deadline passed) and the client's leaving ends it; each first
// claims it. Claiming drops serve and expire, so a Hello whose client left
// keeps nothing of its connection or its decoded frames alive while it
// waits in the backend's list.
type parkedHello struct {
	mu      sync.Mutex
	done    bool
	serve   func()
	expire  func()
	timer   *time.Timer
	watched bool
	key     uint64
}

// park runs serve once p is ready (or failed to become ready), unless the
// Hello's deadline (when it has one) passes first, when expire runs
// instead, or the client leaves first, when its connection is closed and
// counted. Nothing runs twice, and the start goes on for other clients
// either way.
//
// A parked Hello is a closure in p's list and, where the platform can, an
// entry in the hangup watch: 10,000 clients waiting on a cold backend cost
// the broker their sockets and decoded Hellos, not 10,000 goroutines.
func (b *Broker) park(p *proc, c acceptedConn, deadline time.Time, hasDeadline bool, serve, expire func()) {
	if isClosed(p.ready) {
		serve() // the common case: a live backend, nothing to wait for
		return
	}
	pk := &parkedHello{serve: serve, expire: expire}
	// Counted with the connections, so Serve waits for whichever end
	// runs (this worker is counted, so the count is above zero).
	b.conns.Add(1)
	b.metrics.parked.Inc()
	pk.mu.Lock()
	if hasDeadline {
		pk.timer = time.AfterFunc(time.Until(deadline), func() { b.unpark(pk, c, func(pk *parkedHello) func() { return pk.expire }) })
	}
	if b.hangups != nil {
		pk.key, pk.watched = b.hangups.add(c, func() {
			b.unpark(pk, c, func(*parkedHello) func() {
				return func() {
					c.Close()
					b.metrics.parkedLeft.Inc()
				}
			})
		})
	}
	pk.mu.Unlock()
	p.whenReady(func() { b.unpark(pk, c, func(pk *parkedHello) func() { return pk.serve }) })
}

// unpark claims pk and runs the end end picks, unless another end claimed
// it first.
func (b *Broker) unpark(pk *parkedHello, c acceptedConn, end func(*parkedHello) func()) {
	pk.mu.Lock()
	if pk.done {
		pk.mu.Unlock()
		return
	}
	pk.done = true
	run := end(pk)
	pk.serve, pk.expire = nil, nil
	if pk.timer != nil {
		pk.timer.Stop()
	}
	if pk.watched {
		// Before c is answered, handed off or closed: the watch must not
		// name a descriptor this process no longer owns.
		b.hangups.remove(c, pk.key)
	}
	pk.mu.Unlock()
	b.metrics.parked.Dec()
	defer b.conns.Done()
	run()
}

package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/portier/portier/internal/ipc"
	pb "github.com/portier/portier/wire/portierv1"
)

// dialer carries one Dial's state: connecting (to the broker, AutoStart,
// the hello-skip route), then handshake.go's exchange with the broker and
// adopt.go's choice of route.
type dialer struct {
	ctx     context.Context
	cfg     config
	service string
	sock    string
	// helloMsg is the Hello this dial sends, and frameID the request id of
	// its frame; both are kept for rehello.
	helloMsg *pb.Hello
	frameID  uint64
	rehellos int
	// cached is the hello-skip entry this dial recorded, dropped again when
	// its backend_pipe turns out dead.
	cached *cacheEntry
}

// Dial connects to service through the broker and returns a connection
// served by its backend, on the handoff, reconnect or direct route (see the
// package documentation).
//
// Errors: ErrInvalidArgument (bad service name or Version),
// ErrBrokerUnavailable (the broker could not be reached; with AutoStart,
// none came up in time), ErrBrokerMissing (no broker runs: a kind of
// ErrBrokerUnavailable),
// *RefusedError (matches ErrServiceUnknown, ErrVersionBlocked, ... with
// errors.Is), *ProtocolError (the broker broke the protocol before or in
// its reply, including closing the connection without a reply),
// ErrBackendUnavailable (backend_pipe could not be dialed), or ctx.Err()
// wrapped when ctx ends first. A handoff that does not complete is never an
// error.
//
// ctx bounds Dial itself. Unless AwaitReady is given, Dial returns once the
// broker's Negotiated announces a handoff and the route settles on first use
// (see Conn); that settlement is bounded by ReadyTimeout and
// HandshakeTimeout, not by ctx.
func Dial(ctx context.Context, service string, opts ...Option) (*Conn, error) {
	cfg := newConfig(opts)
	hello, frameID := newHello(service, cfg)
	// The broker's own validation, run early: a caller's mistake should not
	// cost a connection or start a broker.
	if err := checkHello(hello, cfg); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("portier: dial %s: %w", service, err)
	}
	sock := cfg.socket
	if sock == "" {
		var err error
		if sock, err = ipc.SocketPath(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBrokerUnavailable, err)
		}
	}
	d := &dialer{ctx: ctx, cfg: cfg, service: service, sock: sock, helloMsg: hello, frameID: frameID}
	if cfg.helloSkip {
		if v, ok := skipCache.Load(d.cacheKey()); ok {
			c, err := d.direct(v.(cacheEntry))
			if c != nil || err != nil {
				return c, err
			}
			// The entry was stale and has been dropped: full Hello.
		}
	}
	return d.dial()
}

// dial sends the Hello to the broker and takes the route its reply allows:
// a negotiated handoff is adopted (at once, or on first use of the Conn),
// anything else reconnects to backend_pipe (adopt.go decides both).
func (d *dialer) dial() (*Conn, error) {
	bc, err := d.dialBroker()
	if err != nil {
		return nil, err
	}
	x, err := d.handshake(bc)
	if errors.Is(err, errNoReply) {
		return d.rehello(d.cfg.earlyData)
	}
	if err != nil {
		return nil, err
	}
	d.remember(x.neg)
	if !x.handoff(d.cfg) {
		_ = bc.Close()
		return d.fallback(x.neg, d.cfg.earlyData)
	}
	c := newAdopting(bc, x, d)
	if !d.cfg.awaitReady && !x.fr.hasFrame() {
		// The ready event is not here yet. Return now and let the first
		// Read (or Route) settle the route: the caller's first request
		// then travels to the backend while it adopts the socket, instead
		// of after a wait for it.
		if err := bc.SetDeadline(time.Time{}); err != nil {
			_ = bc.Close()
			return nil, fmt.Errorf("portier: clear deadline: %w", err)
		}
		return c, nil
	}
	c.mu.Lock()
	err = c.settleLocked(true)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// deadline returns now+t, or ctx's deadline when that is earlier.
func (d *dialer) deadline(t time.Duration) time.Time {
	dl := time.Now().Add(t)
	if cd, ok := d.ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	return dl
}

// ctxDone reports whether ctx has ended, counting a deadline that has passed
// even if ctx's own timer has not fired yet: socket deadlines derived from it
// can expire first.
func (d *dialer) ctxDone() bool {
	if d.ctx.Err() != nil {
		return true
	}
	dl, ok := d.ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func (d *dialer) ctxErr() error {
	err := d.ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("portier: dial %s: %w", d.service, err)
}

// watch interrupts c's blocking I/O when ctx is cancelled. The returned stop
// reports false when the interruption happened or is under way, in which
// case c's deadlines are poisoned and the dial must end with ctx's error.
func (d *dialer) watch(c net.Conn) (stop func() bool) {
	if d.ctx.Done() == nil {
		return func() bool { return true }
	}
	return context.AfterFunc(d.ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// write writes b, if any, to a backend under deadline: the early data on the
// direct route, the replay on the reconnect route.
func (d *dialer) write(c osConn, b []byte, deadline time.Time) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	// Deadline first, then the watch: the watch's poisoned deadline must not
	// be overwritten.
	_ = c.SetWriteDeadline(deadline)
	stop := d.watch(c)
	n, err := c.Write(b)
	if !stop() {
		return n, d.ctxErr()
	}
	if err != nil {
		return n, err
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		return n, err
	}
	return n, nil
}

func (d *dialer) cacheKey() cacheKey {
	return cacheKey{socket: d.sock, service: d.service, version: d.cfg.version}
}

// remember records backend_pipe in the hello-skip cache (unless NoHelloSkip).
func (d *dialer) remember(neg *pb.Negotiated) {
	if !d.cfg.helloSkip || neg.GetBackendPipe() == "" {
		return
	}
	e := cacheEntry{pipe: neg.GetBackendPipe(), daemonVersion: neg.GetDaemonVersion()}
	skipCache.Store(d.cacheKey(), e)
	d.cached = &e
}

// forget drops the entry this dial recorded, if it is still the cached one.
func (d *dialer) forget() {
	if d.cached != nil {
		skipCache.CompareAndDelete(d.cacheKey(), *d.cached)
	}
}

// direct dials a cached backend_pipe: the repeat-connection fast path. The
// connection is used only when its peer runs as this user (the same check
// as the broker's), so the early data never goes to another user's process
// that took the endpoint's name. It returns (nil, nil) when the entry is
// stale (nobody listens, or not this user); the entry is then dropped and
// the caller does a full Hello.
//
// Only the user is checked, not which process: backend_pipe is a fresh
// name for every backend the broker starts, in the user's private
// directory (on Windows a random pipe name), removed when the backend stops
// listening. So a process serving it is the backend the entry was made for,
// or one the same user set up there on purpose, which a pid would not tell
// apart either; and v1's Negotiated has no field that names the backend's
// pid.
func (d *dialer) direct(e cacheEntry) (*Conn, error) {
	key := d.cacheKey()
	deadline := d.deadline(d.cfg.handshakeTimeout)
	uc, err := dialEndpoint(d.ctx, e.pipe, deadline)
	if err == nil {
		if _, err = ipc.CheckPeer(uc, ipc.EffectiveUID); err != nil {
			_ = uc.Close()
		}
	}
	if err != nil {
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		skipCache.CompareAndDelete(key, e)
		return nil, nil
	}
	if n, err := d.write(uc, d.cfg.earlyData, deadline); err != nil {
		_ = uc.Close()
		if d.ctxDone() {
			return nil, d.ctxErr()
		}
		skipCache.CompareAndDelete(key, e)
		if n == 0 {
			// Nothing reached the backend, so a full Hello may carry it.
			return nil, nil
		}
		return nil, fmt.Errorf("%w: write early data to %s: %w", ErrBackendUnavailable, e.pipe, err)
	}
	return newConn(uc, Direct, 0, e.pipe, e.daemonVersion, nil), nil
}

// dialBroker connects to the broker, starting it first when AutoStart is on
// and its socket is missing.
func (d *dialer) dialBroker() (osConn, error) {
	uc, err := dialEndpoint(d.ctx, d.sock, d.deadline(d.cfg.handshakeTimeout))
	if err == nil {
		return d.checkPeer(uc)
	}
	if d.ctxDone() {
		return nil, d.ctxErr()
	}
	if !brokerMissing(err) {
		return nil, fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, d.sock, err)
	}
	if d.cfg.autoStart == nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBrokerMissing, d.sock, err)
	}
	return d.autoStart(err)
}

// checkPeer refuses a broker socket served by another user than this
// process's effective one: the default path is under /tmp when
// $XDG_RUNTIME_DIR is unset, and the Hello and early data must not go to
// whoever planted a socket there.
func (d *dialer) checkPeer(uc osConn) (osConn, error) {
	if _, err := ipc.CheckPeer(uc, ipc.EffectiveUID); err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrBrokerUnavailable, d.sock, err)
	}
	return uc, nil
}

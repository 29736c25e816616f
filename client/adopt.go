package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// maxRehellos bounds the fresh Hellos a dial sends after backend_pipe
// turned out dead, counting the one after a 0-RTT handoff that ended
// before any reply (errNoReply).
const maxRehellos = 2

// adoption is the state of a handoff whose ready event has not been read.
type adoption struct {
	fr              *frameReader
	token           []byte
	deadline        time.Time // ready timeout
	sent            []byte    // every byte written so far, for the replay
	closedWrite     bool
	readDL, writeDL time.Time // the caller's deadlines
	d               *dialer   // for the reconnect and a fresh Hello
}

// newAdopting returns the Conn of a negotiated handoff on the broker
// socket bc, its route not settled yet. The early data was written with
// the Hello; it is the start of the replay.
func newAdopting(bc osConn, x exchange, d *dialer) *Conn {
	c := newConn(bc, Handoff, x.neg.GetConnectionId(), x.neg.GetBackendPipe(), x.neg.GetDaemonVersion(), nil)
	c.adopt = &adoption{
		fr:       x.fr,
		token:    x.neg.GetHandlePassedToken(),
		deadline: d.deadline(d.cfg.readyTimeout),
		sent:     append([]byte(nil), d.cfg.earlyData...),
		d:        d,
	}
	c.settled.Store(false)
	return c
}

// settleLocked decides the route of a negotiated handoff, once: it adopts
// the socket when the backend's ready event arrives, and otherwise (EOF, a
// refused or mismatched event, garbage, the ready timeout) reconnects to
// backend_pipe and replays every byte written so far, or, when backend_pipe
// is dead too, sends a fresh Hello that carries the replay (fallback).
//
// It is the one adoption path. Dial runs it (inDial) under AwaitReady or
// when the ready event came with Negotiated: Dial's ctx bounds it, its end
// interrupts the wait and fails Dial, and errors are Dial's. A Conn's first
// use runs it too: then ReadyTimeout, HandshakeTimeout and the caller's read
// deadline bound it, and a failure matches ErrBackendUnavailable and sticks
// (see Conn).
func (c *Conn) settleLocked(inDial bool) error {
	a := c.adopt
	if a == nil {
		return c.failed
	}
	d := a.d
	if !inDial {
		// Dial has returned: its ctx no longer bounds anything.
		fresh := *a.d
		fresh.ctx = context.Background()
		d = &fresh
	}

	dl := a.deadline
	userFirst := !a.readDL.IsZero() && a.readDL.Before(dl)
	if userFirst {
		dl = a.readDL
	}
	stop := func() bool { return !inDial || !d.ctxDone() }
	if !a.fr.hasFrame() {
		// Only a read from the socket can block: bound it, and watch ctx
		// for it. (With the ready event already read, as after a 0-RTT
		// handoff, no deadline is set: an earlier deadline than the one
		// in force costs the runtime a wakeup of its poller.)
		_ = c.uc.SetReadDeadline(dl)
		stop = d.watch(c.uc)
	}
	ev, err := a.fr.next(maxReplyBody)
	if !stop() {
		_ = c.uc.Close()
		c.finishLocked(c.route, d.ctxErr())
		return c.failed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if userFirst && time.Now().Before(a.deadline) {
			// The caller's read deadline, not the ready timeout: report
			// it and keep waiting on the next call.
			_ = c.uc.SetReadDeadline(a.readDL)
			return err
		}
		ev, err = lastChance(c.uc, a.fr)
	}
	if err == nil && readyMatches(ev, a.token, c.connID) {
		c.pending = a.fr.rest()
		c.hasPending.Store(len(c.pending) > 0)
		_ = c.uc.SetReadDeadline(a.readDL)
		_ = c.uc.SetWriteDeadline(a.writeDL)
		c.finishLocked(Handoff, nil)
		return nil
	}

	// The handoff did not complete and nobody read what was written:
	// reconnect and replay it.
	_ = c.uc.Close()
	nc, err := d.fallback(&pb.Negotiated{BackendPipe: c.backendPipe, ConnectionId: c.connID, DaemonVersion: c.daemonVersion}, a.sent)
	if err == nil && a.closedWrite {
		if err = nc.uc.CloseWrite(); err != nil {
			_ = nc.uc.Close()
		}
	}
	if err != nil {
		if !inDial && !errors.Is(err, ErrBackendUnavailable) {
			err = fmt.Errorf("%w: %s: %w", ErrBackendUnavailable, c.backendPipe, err)
		}
		c.finishLocked(Reconnect, err)
		return err
	}
	_ = nc.uc.SetReadDeadline(a.readDL)
	_ = nc.uc.SetWriteDeadline(a.writeDL)
	c.uc, c.backendPipe, c.connID, c.daemonVersion = nc.uc, nc.backendPipe, nc.connID, nc.daemonVersion
	c.finishLocked(Reconnect, nil)
	return nil
}

// fallback reaches the backend without a handoff, on the reconnect route:
// it dials backend_pipe and replays what the caller wrote for the backend.
// When backend_pipe is dead too (the backend died, often the reason the
// handoff failed), it asks the broker again (rehello), at most maxRehellos
// times, so that a new backend serves the client. It returns a settled Conn.
func (d *dialer) fallback(neg *pb.Negotiated, replay []byte) (*Conn, error) {
	if d.ctxDone() {
		return nil, d.ctxErr()
	}
	pipe := neg.GetBackendPipe()
	if pipe == "" {
		return nil, &ProtocolError{Op: "negotiated", Err: errors.New("no backend_pipe to reconnect to")}
	}
	rdl := d.deadline(d.cfg.handshakeTimeout)
	uc, err := dialEndpoint(d.ctx, pipe, rdl)
	if err == nil {
		if err = checkBackend(uc); err == nil {
			_, err = d.write(uc, replay, rdl)
		}
		if err != nil {
			_ = uc.Close()
		}
	}
	if err == nil {
		return newConn(uc, Reconnect, neg.GetConnectionId(), pipe, neg.GetDaemonVersion(), nil), nil
	}
	d.forget()
	if d.ctxDone() {
		return nil, d.ctxErr()
	}
	if d.rehellos < maxRehellos {
		return d.rehello(replay)
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrBackendUnavailable, pipe, err)
}

// rehello repeats the Hello without the handoff capabilities and with
// replay as early data, after backend_pipe could not be reached (the broker
// notices a dead backend at once and routes the new Hello to a fresh one),
// or after a 0-RTT handoff ended before any reply (errNoReply). Without a
// deadline of its own (a Conn's first use) it is bounded by
// HandshakeTimeout as a whole.
func (d *dialer) rehello(replay []byte) (*Conn, error) {
	cfg := d.cfg
	cfg.noHandoff, cfg.helloSkip, cfg.earlyData, cfg.autoStart = true, false, replay, nil
	h := proto.Clone(d.helloMsg).(*pb.Hello)
	// Only the handoff is given up (and with it 0-RTT): the other bits
	// (CapAnyVersion) still say which version this client wants.
	h.ClientCapabilities &^= wire.CapHandlePassing | wire.CapZeroRTT
	ctx := d.ctx
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.handshakeTimeout)
		defer cancel()
	}
	nd := &dialer{ctx: ctx, cfg: cfg, service: d.service, sock: d.sock, helloMsg: h,
		frameID: frameIDs.Add(1), rehellos: d.rehellos + 1}
	if nd.rehellos > 1 {
		// The broker may not have reaped the dead backend yet.
		if err := nd.sleep(time.Duration(nd.rehellos) * 10 * time.Millisecond); err != nil {
			return nil, err
		}
	}
	for waits := 0; ; waits++ {
		c, err := nd.dial()
		// A broker that is stopping (a restart) answers SHUTTING_DOWN,
		// asking to retry after a moment to reach its successor. The
		// reconnect route promises the client a backend, so it does as
		// asked, while its budget allows; a first Hello so refused is
		// the caller's to retry.
		var re *RefusedError
		if err == nil || waits >= maxSuccessorWaits || !errors.As(err, &re) ||
			re.Code != wire.CodeShuttingDown || re.RetryAfter <= 0 || !nd.hasTime(re.RetryAfter) {
			return c, err
		}
		if err := nd.sleep(re.RetryAfter); err != nil {
			return nil, err
		}
		nd.frameID = frameIDs.Add(1)
	}
}

// maxSuccessorWaits bounds how often a fresh Hello after a dead
// backend_pipe waits for a stopping broker's successor.
const maxSuccessorWaits = 2

// hasTime reports whether ctx leaves more than t.
func (d *dialer) hasTime(t time.Duration) bool {
	dl, ok := d.ctx.Deadline()
	return !ok || time.Until(dl) > t
}

// lastChance looks once more, without waiting, for a ready event that
// arrived while the ready timeout was being handled. Adopting it is better
// than reconnecting: a backend whose ready write succeeded hands the
// connection, and the early data in it, to its application, so replaying
// that data elsewhere would deliver it twice. (The window between this look
// and closing the socket remains; it is microseconds wide.)
func lastChance(bc osConn, fr *frameReader) (*pb.Frame, error) {
	if err := bc.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	r, err := nonblocking(bc)
	if err != nil {
		return nil, err
	}
	saved := fr.r
	fr.r = r
	defer func() { fr.r = saved }()
	return fr.next(maxReplyBody)
}

//go:build windows

package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdpass"
	"golang.org/x/sys/windows"
)

// transport returns the handoff.Transport that moves client to this
// control connection's backend.
func (c *controlConn) transport(client acceptedConn, reply []byte, validUntil time.Time) handoff.Transport {
	return &handleTransport{ctrl: c, client: client, reply: reply, validUntil: validUntil}
}

// handleTransport moves a client's pipe instance to a backend: Transfer
// duplicates the broker's handle into the backend process (the process
// handle the broker kept from starting it, or opened after a re-adopted
// backend proved its identity, never one looked up by pid now), Deliver
// writes the offer naming the new handle's value on the control
// connection, and Reclaim closes that handle in the backend when the offer
// provably never reached it.
type handleTransport struct {
	ctrl       *controlConn
	client     acceptedConn
	reply      []byte    // a 0-RTT offer's HelloReply frame, nil for a plain offer
	validUntil time.Time // carried as the offer frame's deadline_unix_ms
}

// testHookTransferred, when set (by tests only), runs after Transfer placed
// the handle in the backend and before Deliver, with the backend's pid: the
// stage at which a backend that dies, or a control connection that drops,
// leaves a handle nobody announced.
var testHookTransferred func(pid int)

// Transfer duplicates the client's handle into the backend and records its
// value in o.
func (t *handleTransport) Transfer(_ context.Context, o *handoff.Offer) error {
	p := t.ctrl.proc
	err := fdpass.WithHandle(t.client, func(h windows.Handle) error {
		return p.withProcess(func(target windows.Handle) error {
			v, err := fdpass.DuplicateIntoProcess(target, h)
			o.HandleValue = v
			return err
		})
	})
	if err != nil {
		return transferError(fmt.Sprintf("duplicate the client's pipe into backend pid %d", p.pid), err)
	}
	if testHookTransferred != nil {
		testHookTransferred(p.pid)
	}
	return nil
}

// Deliver writes the offer with the handle value on the control
// connection. The offer reached the backend as soon as one byte of it did:
// a partial write may already be in the backend's pipe buffer.
func (t *handleTransport) Deliver(_ context.Context, o *handoff.Offer) (bool, error) {
	if t.ctrl.isClosed() {
		return false, errControlClosed
	}
	msg, err := offerFrame(o, t.reply, o.HandleValue, t.validUntil)
	if err != nil {
		return false, err
	}
	t.ctrl.wmu.Lock()
	defer t.ctrl.wmu.Unlock()
	_ = t.ctrl.conn.SetWriteDeadline(time.Now().Add(offerWriteTimeout))
	n, err := t.ctrl.conn.Write(msg)
	return n > 0, err
}

// Reclaim closes the duplicated handle in the backend. A backend that has
// exited took the handle with it, which counts as reclaimed: nothing is
// left open.
func (t *handleTransport) Reclaim(o *handoff.Offer) error {
	err := t.ctrl.proc.withProcess(func(target windows.Handle) error {
		return fdpass.CloseInProcess(target, o.HandleValue)
	})
	if err == nil || errors.Is(err, fdpass.ErrTargetExited) || errors.Is(err, errProcessReleased) {
		return nil
	}
	return transferError(fmt.Sprintf("close handle %#x in backend pid %d", o.HandleValue, t.ctrl.proc.pid), err)
}

// transferError classifies a duplication failure for the orchestrator:
// ERROR_ACCESS_DENIED from a live process is a permission problem; a
// backend that exited, a stale handle, a process that could not be opened
// or a failed DuplicateHandle mean the handoff's objects are not what they
// should be.
func transferError(what string, err error) error {
	switch {
	case errors.Is(err, fdpass.ErrAccessDenied):
		return fmt.Errorf("%s: %w: %w", what, handoff.ErrPermissionDenied, err)
	case errors.Is(err, fdpass.ErrTargetExited), errors.Is(err, fdpass.ErrInvalidHandle),
		errors.Is(err, fdpass.ErrOpenProcess), errors.Is(err, fdpass.ErrDuplicateFailed),
		errors.Is(err, errProcessReleased), errors.Is(err, net.ErrClosed):
		return fmt.Errorf("%s: %w: %w", what, handoff.ErrIntegrity, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// revokeClient ends a 0-RTT client's pipe whose handoff ran out of time
// while the backend, alive, still holds its duplicate: DisconnectNamedPipe
// acts on the pipe instance, not on the broker's handle, so the client sees
// the pipe end (and sends its fresh Hello) instead of waiting for a reply
// nobody writes. The usual other failures leave no other server handle
// behind (a rejecting backend closed its own, an exited one took it along,
// an offer that never went out had it reclaimed), so closing the broker's
// ends the pipe. One does not: a control connection lost while the backend
// lives leaves its duplicate (counted as leaked), and that client waits
// for its own ready timeout, as a client without 0-RTT does. Only on an ACK
// timeout, because a disconnect also discards what the backend may have
// written, which the client must see if the backend adopted the pipe.
func revokeClient(c acceptedConn, out handoff.Outcome) {
	if !out.Reached || out.Reason != handoff.ReasonAckTimeout {
		return
	}
	_ = fdpass.WithHandle(c, func(h windows.Handle) error { return windows.DisconnectNamedPipe(h) })
}

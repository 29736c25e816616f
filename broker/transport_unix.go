//go:build unix

package broker

import (
	"context"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdpass"
	"golang.org/x/sys/unix"
)

// transport returns the handoff.Transport that moves client to this
// control connection's backend.
func (c *controlConn) transport(client acceptedConn, reply []byte, validUntil time.Time) handoff.Transport {
	return &fdTransport{ctrl: c, client: client, reply: reply, validUntil: validUntil}
}

// fdTransport moves a client connection to a backend with SCM_RIGHTS: the
// descriptor and the bytes of its offer frame travel in one sendmsg.
type fdTransport struct {
	ctrl       *controlConn
	client     acceptedConn
	reply      []byte    // a 0-RTT offer's HelloReply frame, nil for a plain offer
	validUntil time.Time // carried as the offer frame's deadline_unix_ms
}

// Transfer is a no-op on Unix: the descriptor rides with the offer.
func (t *fdTransport) Transfer(context.Context, *handoff.Offer) error { return nil }

// testHookDeliver, when set (by tests only), runs before an offer is sent;
// an error it returns fails Deliver with nothing sent: a fault at the
// deliver stage.
var testHookDeliver func() error

// Deliver sends the offer with the client's descriptor.
func (t *fdTransport) Deliver(_ context.Context, o *handoff.Offer) (bool, error) {
	if t.ctrl.isClosed() {
		return false, errControlClosed
	}
	if testHookDeliver != nil {
		if err := testHookDeliver(); err != nil {
			return false, err
		}
	}
	msg, err := offerFrame(o, t.reply, 0, t.validUntil)
	if err != nil {
		return false, err
	}
	var sent bool
	err = fdpass.WithFD(t.client, func(fd int) error {
		t.ctrl.wmu.Lock()
		defer t.ctrl.wmu.Unlock()
		var serr error
		sent, serr = fdpass.SendWithFD(t.ctrl.conn, msg, fd, time.Now().Add(offerWriteTimeout))
		return serr
	})
	return sent, err
}

// Reclaim is a no-op on Unix: a descriptor that reached the backend is
// closed by it (or by its exit).
func (t *fdTransport) Reclaim(*handoff.Offer) error { return nil }

// revokeClient ends a 0-RTT client's connection whose handoff failed after
// the offer may have reached the backend: shutdown acts on the socket, not
// on the broker's descriptor, so the client reads EOF (and sends its fresh
// Hello) even while a hung backend, or the backend's unread control
// socket, still holds a copy, and a backend that adopts it late cannot
// write to it. What the backend wrote before (its reply and ready event)
// stays readable, so a client whose backend did adopt still sees that
// first. An offer that never reached the backend needs nothing: the
// broker's copy is the only one, and Close ends it.
func revokeClient(c acceptedConn, out handoff.Outcome) {
	if !out.Reached {
		return
	}
	_ = fdpass.WithFD(c, func(fd int) error { return unix.Shutdown(fd, unix.SHUT_RDWR) })
}

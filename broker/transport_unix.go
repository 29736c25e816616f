//go:build unix

package broker

import (
	"context"
	"time"

	"github.com/portier/portier/handoff"
	"github.com/portier/portier/internal/fdpass"
)

// transport returns the handoff.Transport that moves client to this
// control connection's backend.
func (c *controlConn) transport(client acceptedConn, validUntil time.Time) handoff.Transport {
	return &fdTransport{ctrl: c, client: client, validUntil: validUntil}
}

// fdTransport moves a client connection to a backend with SCM_RIGHTS: the
// descriptor and the bytes of its offer frame travel in one sendmsg.
type fdTransport struct {
	ctrl       *controlConn
	client     acceptedConn
	validUntil time.Time // carried as the offer frame's deadline_unix_ms
}

// Transfer is a no-op on Unix: the descriptor rides with the offer.
func (t *fdTransport) Transfer(context.Context, *handoff.Offer) error { return nil }

// Deliver sends the offer with the client's descriptor.
func (t *fdTransport) Deliver(_ context.Context, o *handoff.Offer) (bool, error) {
	if t.ctrl.isClosed() {
		return false, errControlClosed
	}
	msg, err := offerFrame(o, 0, t.validUntil)
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

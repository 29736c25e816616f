//go:build windows

package backend

import (
	"context"
	"fmt"
	"net"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
)

// Handed-off named-pipe handles are adopted (offer_windows.go).
const handoffSupported = true

// listenEndpoint listens on the backend's own pipe, the reconnect route.
// Its connections stay in this process, so go-winio's listener (which binds
// each instance to this process's completion port) is the right one.
func listenEndpoint(name string) (net.Listener, error) { return ipc.ListenPipe(name) }

// dialBroker connects to the broker's pipe and checks that the broker runs
// as this user. Pipe names are one namespace for all users: while no
// instance of the broker's pipe exists (between two brokers), anyone may
// create one, and a re-registration must not hand the spawn secret to it.
func dialBroker(ctx context.Context, name string) (net.Conn, error) {
	c, err := ipc.DialPipe(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, err := ipc.CheckPeer(c, ipc.EffectiveUID); err != nil {
		c.Close()
		return nil, fmt.Errorf("broker pipe %s: %w", name, err)
	}
	return c, nil
}

// serveControl reads control frames. An offer's connection travels as a
// handle value inside the offer; the handle is already in this process
// when the frame arrives.
func (l *Listener) serveControl(c *control) error {
	for {
		f, err := wire.ReadFrame(c.conn, wire.MaxBody)
		if err != nil {
			return err
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff, wire.ProtocolZeroRTTOffer:
			// The handle is this process's whatever else is wrong with
			// the offer: handleOffer closes it on every rejection.
			l.handleOffer(c, f, arrivalOf(wire.OfferHandleValue(f.GetPayloadProtocol(), f.GetPayload())))
		case wire.ProtocolBackendControl:
			l.handleControl(f)
		}
	}
}

//go:build windows

package backend

import (
	"context"
	"net"

	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
)

// Handed-off named-pipe handles are not adopted on Windows yet: the backend
// registers without the capability and every client takes the reconnect
// route to the backend's own pipe.
const handoffSupported = false

func listenEndpoint(name string) (net.Listener, error) { return ipc.ListenPipe(name) }

func dialBroker(ctx context.Context, name string) (net.Conn, error) { return ipc.DialPipe(ctx, name) }

// serveControl reads control frames; offers are rejected (pipeArrival)
// because this platform does not adopt handles yet.
func (l *Listener) serveControl(c *control) error {
	for {
		f, err := wire.ReadFrame(c.conn, wire.MaxBody)
		if err != nil {
			return err
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff:
			l.handleOffer(c, f, pipeArrival{})
		case wire.ProtocolBackendControl:
			l.handleControl(f)
		}
	}
}

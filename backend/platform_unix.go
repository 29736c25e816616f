//go:build unix

package backend

import (
	"context"
	"errors"
	"net"

	"github.com/portier/portier/internal/fdpass"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
)

const handoffSupported = true

func listenEndpoint(path string) (net.Listener, error) { return ipc.Listen(path) }

func dialBroker(ctx context.Context, path string) (net.Conn, error) { return ipc.Dial(ctx, path) }

// serveControl reads the control connection with recvmsg so that every
// descriptor stays attached to the offer it travelled with.
func (l *Listener) serveControl(c *control) error {
	uc, ok := c.conn.(*net.UnixConn)
	if !ok {
		return errors.New("backend: control connection is not a unix socket")
	}
	r := fdpass.NewReceiver(uc, wire.MaxBody)
	defer r.Close()
	// ACKs go out when the reader has handled every offer already in the
	// socket (see control).
	c.coalesce = true
	r.OnIdle(c.flushAcks)
	defer c.flushAcks()
	for {
		msg, err := r.Next()
		if err != nil {
			return err
		}
		f, err := wire.DecodeFrame(msg.Body)
		if err != nil {
			closeFD(msg.FD)
			return err
		}
		switch f.GetPayloadProtocol() {
		case wire.ProtocolHandoff, wire.ProtocolZeroRTTOffer:
			l.handleOffer(c, f, fdArrival{fd: msg.FD, err: msg.Err})
		case wire.ProtocolBackendControl:
			closeFD(msg.FD)
			l.handleControl(f)
		default:
			closeFD(msg.FD)
		}
	}
}

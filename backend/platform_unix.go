//go:build unix

package backend

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/portier/portier/internal/fdpass"
	"github.com/portier/portier/internal/ipc"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/unix"
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
		case wire.ProtocolHandoff:
			l.handleOffer(c, f, msg)
		case wire.ProtocolBackendControl:
			closeFD(msg.FD)
			l.handleControl(f)
		default:
			closeFD(msg.FD)
		}
	}
}

func closeFD(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}

// handleOffer adopts one handed-off connection, inline on the control
// reader: checks, the ready event, the net.Conn, the queue and the ACK take
// about 10 µs and never wait on anything (the queue slot is reserved, every
// write has a deadline), so a slow Accept caller cannot stall the control
// connection. Running it inline rather than on a goroutine per offer saves a
// goroutine wakeup per handoff (measured with perf stat: fewer context
// switches per connection), and at that cost one reader adopts far more
// connections per second than the broker hands out.
func (l *Listener) handleOffer(c *control, f *pb.Frame, msg fdpass.Message) {
	fd := msg.FD
	o, err := l.checkOffer(f)
	reject := func(detail string) {
		closeFD(fd)
		c.ack(f.GetRequestId(), o.GetToken(), false, detail)
	}
	switch {
	case msg.Err != nil:
		reject(msg.Err.Error())
		return
	case err != nil:
		reject(err.Error())
		return
	case fd < 0:
		reject("offer arrived without a descriptor")
		return
	case l.closed():
		reject("backend listener is closed")
		return
	case !l.reserve():
		reject("accept queue full")
		return
	}
	ready, err := readyEvent(f, o)
	if err != nil {
		l.reserved.Add(-1)
		reject(err.Error())
		return
	}
	// The descriptor becomes a net.Conn before anything is written on it: a
	// failure here is a rejection the client must not see a ready event for.
	conn, err := fdpass.ConnFromFD(fd) // takes fd, closing it on error
	if err != nil {
		l.reserved.Add(-1)
		c.ack(f.GetRequestId(), o.GetToken(), false, "adopt connection: "+err.Error())
		return
	}
	// The socket is non-blocking (its file description is shared with the
	// broker's Go socket), and a few dozen bytes into a fresh local socket
	// never block; a partial write is finished below with a deadline.
	var n int
	err = fdpass.WithFD(conn.(syscall.Conn), func(s int) error {
		var werr error
		n, werr = writeFD(s, ready)
		return werr
	})
	if err == nil && n < len(ready) {
		_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		if _, err = conn.Write(ready[n:]); err == nil {
			err = conn.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		conn.Close()
		l.reserved.Add(-1)
		c.ack(f.GetRequestId(), o.GetToken(), false, "write handoff-ready event: "+err.Error())
		return
	}
	l.deliver(conn)
	c.ack(f.GetRequestId(), o.GetToken(), true, "")
}

// writeFD writes what the socket takes at once; EAGAIN counts as zero bytes.
func writeFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, nil
		case err != nil:
			return 0, err
		}
		return n, nil
	}
}

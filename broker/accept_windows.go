//go:build windows

package broker

import (
	"errors"
	"net"

	"github.com/portier/portier/internal/ipc"
)

// acceptedConn is a connection the broker accepted: the server end of one
// instance of the broker's named pipe. Its handle is bound to no I/O
// completion port (ipc.PipeConn does event-based overlapped I/O), so a
// backend can adopt a duplicate of it on its own port.
type acceptedConn = *ipc.PipeConn

// errNoHandover: Config.Listener is a Unix socket handed over by a
// service manager; Windows has no such thing.
var errNoHandover = errors.New("Config.Listener (a socket handed over by socket activation) is for Unix; on Windows the broker creates its named pipe itself")

// listen creates the broker's named pipe as its one server: a named mutex
// derived from the pipe name plus a probe (see ipc.ListenSingleton).
func (b *Broker) listen() (*ipc.Listener, error) {
	if b.cfg.Listener != nil {
		b.cfg.Listener.Close() // Serve owns it, as documented
		return nil, errNoHandover
	}
	return ipc.ListenSingleton(b.cfg.Socket)
}

// fdReserve is the Unix accept loop's reserve descriptor. Windows has no
// per-process descriptor limit for accept to run into: the listener creates
// pipe instances ahead of clients and retries one it could not create.
type fdReserve struct{}

func (*fdReserve) close() {}

// acceptLoop accepts until the listener closes. An error other than the
// listener's closing is transient (an instance could not be created; the
// listener tries again after a pause of its own), so it is logged and the
// loop goes on.
func (b *Broker) acceptLoop(ln *ipc.Listener) {
	for {
		c, err := ln.AcceptPipe()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Warn("accept failed", "err", err)
			continue
		}
		b.dispatch(c)
	}
}

//go:build windows

package broker

import (
	"errors"
	"fmt"
	"net"
)

// errWindowsUnsupported: what this build of the broker does not do on
// Windows yet.
var errWindowsUnsupported = fmt.Errorf("broker: %w on windows yet", errors.ErrUnsupported)

// acceptedConn is a connection the broker accepted.
type acceptedConn = net.Conn

// pipeListener is the broker's named-pipe listener.
type pipeListener struct{}

func (*pipeListener) Close() error { return nil }

// listen would create the broker's named pipe.
func (b *Broker) listen() (*pipeListener, error) {
	return nil, fmt.Errorf("serve %s: %w", b.cfg.Socket, errWindowsUnsupported)
}

// fdReserve is the Unix accept loop's reserve descriptor; Windows has no
// per-process descriptor limit for accept to run into.
type fdReserve struct{}

func (*fdReserve) close() {}

// acceptLoop accepts until the listener closes.
func (b *Broker) acceptLoop(*pipeListener) {}

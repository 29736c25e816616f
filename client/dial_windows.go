//go:build windows

package client

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/portier/portier/internal/ipc"
	"golang.org/x/sys/windows"
)

// osConn is the connection a Conn reads and writes: the client end of a
// named pipe.
type osConn = *ipc.ClientPipe

// maxReplay bounds the bytes a Conn keeps for replay while its route is not
// settled. The early data and those writes wait in the broker's pipe
// instance until the backend adopts it, so the bound stays below that
// pipe's buffer (64 KiB each way): writes before the route settles do not
// block.
const maxReplay = 32 << 10

// dialEndpoint opens the named pipe name before deadline, waiting for a
// free instance while the server is busy.
func dialEndpoint(ctx context.Context, name string, deadline time.Time) (*ipc.ClientPipe, error) {
	return ipc.DialPipeDeadline(ctx, name, deadline)
}

// checkBackend refuses a backend_pipe served by another user. Pipe names
// are one namespace for all users, so a pipe that outlived its backend's
// name, or a hello-skip entry, could be served by someone who created a
// pipe of that name: the early data must not go there.
func checkBackend(c *ipc.ClientPipe) error {
	_, err := ipc.CheckPeer(c, ipc.EffectiveUID)
	return err
}

// brokerMissing reports whether a dial error means nobody serves the pipe:
// no such pipe (ERROR_FILE_NOT_FOUND), or a pipe whose every instance is
// busy with none listening, which is what a broker leaves behind when it
// exits while backends hold connections it handed them.
func brokerMissing(err error) bool {
	return errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, ipc.ErrNotListening)
}

// absEndpoint returns the pipe name as it is: \\.\pipe\ names are not
// relative to a directory.
func absEndpoint(name string) (string, error) { return name, nil }

// nonblocking returns a reader of what is already in c's pipe buffer, for
// lastChance.
func nonblocking(c *ipc.ClientPipe) (io.Reader, error) { return peekReader{c}, nil }

// peekReader reads what PeekNamedPipe says is already there, never more,
// so the read does not wait; an empty pipe reads as io.EOF.
type peekReader struct{ c *ipc.ClientPipe }

func (r peekReader) Read(p []byte) (int, error) {
	n, err := r.c.Buffered()
	if err != nil {
		return 0, err
	}
	if n == 0 || len(p) == 0 {
		return 0, io.EOF
	}
	return r.c.Read(p[:min(n, len(p))])
}

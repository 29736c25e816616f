//go:build unix

package main

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/portier/portier/internal/ipc"
)

// dialSocket connects to the broker socket and refuses one served by
// another user (a socket planted under /tmp must not be reported as our
// broker).
func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	c, err := ipc.Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	cred, err := ipc.PeerCred(c)
	if err == nil && cred.UID != os.Geteuid() {
		err = fmt.Errorf("%s is served by uid %d, not by you (uid %d)", path, cred.UID, os.Geteuid())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

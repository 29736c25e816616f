//go:build unix

package main

import (
	"context"
	"fmt"
	"net"

	"github.com/portier/portier/internal/ipc"
)

// dialSocket connects to the broker socket and refuses one served by
// another user than our effective one (a socket planted under /tmp must not
// be reported as our broker).
func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	c, err := ipc.Dial(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := ipc.CheckPeer(c, ipc.EffectiveUID); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

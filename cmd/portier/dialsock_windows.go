//go:build windows

package main

import (
	"context"
	"fmt"
	"net"

	"github.com/portier/portier/internal/ipc"
)

// dialSocket connects to the broker's pipe and refuses one served by
// another user (pipe names are one namespace for every user: whoever
// creates a name first serves it).
func dialSocket(ctx context.Context, name string) (net.Conn, error) {
	c, err := ipc.DialPipe(ctx, name)
	if err != nil {
		return nil, err
	}
	if _, err := ipc.CheckPeer(c, ipc.EffectiveUID); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, nil
}

//go:build windows

package main

import (
	"context"
	"net"

	"github.com/portier/portier/internal/ipc"
)

func dialSocket(ctx context.Context, name string) (net.Conn, error) { return ipc.DialPipe(ctx, name) }

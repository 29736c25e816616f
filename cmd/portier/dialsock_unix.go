//go:build unix

package main

import (
	"context"
	"net"

	"github.com/portier/portier/internal/ipc"
)

func dialSocket(ctx context.Context, path string) (net.Conn, error) { return ipc.Dial(ctx, path) }

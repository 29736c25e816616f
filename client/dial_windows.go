//go:build windows

package client

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"
)

// errWindows: the broker's Windows endpoint is a named pipe, which this
// package does not dial yet.
var errWindows = errors.New("portier: client not supported on windows yet")

func dialUnix(context.Context, string, time.Time) (*net.UnixConn, error) { return nil, errWindows }

func brokerMissing(error) bool { return false }

// nonblockReader is never used on windows, where dialing fails first.
type nonblockReader struct{ rc syscall.RawConn }

func (nonblockReader) Read([]byte) (int, error) { return 0, io.EOF }

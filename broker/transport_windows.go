//go:build windows

package broker

import (
	"context"
	"time"

	"github.com/portier/portier/handoff"
)

// transport returns the handoff.Transport that moves client to this
// control connection's backend.
func (c *controlConn) transport(acceptedConn, time.Time) handoff.Transport { return handleTransport{} }

// handleTransport will duplicate the client's pipe handle into the backend.
type handleTransport struct{}

func (handleTransport) Transfer(context.Context, *handoff.Offer) error { return errWindowsUnsupported }

func (handleTransport) Deliver(context.Context, *handoff.Offer) (bool, error) {
	return false, errWindowsUnsupported
}

func (handleTransport) Reclaim(*handoff.Offer) error { return nil }

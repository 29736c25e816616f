package handoff

import (
	"context"
	"errors"
	"fmt"
)

// Offer is what the broker sends the backend for one handoff. The
// orchestrator fills ConnectionID, Service and Token; Transport.Transfer may
// set HandleValue. A Transport must not keep the pointer after returning.
type Offer struct {
	// ConnectionID is the broker's id for the client connection; the ACK
	// carries it as its correlation id.
	ConnectionID uint64
	// Service is the service name the client asked for.
	Service string
	// Token is the one-time token the backend must echo (formats redacted).
	Token Token
	// HandleValue is set by Transfer on Windows to the handle value
	// duplicated into the backend process. It must be nonzero exactly when a
	// handle was placed in the backend: the orchestrator treats a nonzero
	// value as "a handle now lives in the backend" for Reclaim and leak
	// accounting. Unix transports leave it zero.
	HandleValue uint64
}

// Transport moves one client connection to one backend. The broker
// implements it per backend control connection. Errors should wrap
// ErrPermissionDenied or ErrIntegrity where they apply; any other error
// counts as ReasonTransferFailed, and a context error (or the context being
// done) as ReasonCanceled. A panic in any method is recovered and treated as
// an error.
type Transport interface {
	// Transfer makes the connection available to the backend (Windows:
	// DuplicateHandle into the verified backend, setting o.HandleValue;
	// Unix: nothing to do, return nil).
	Transfer(ctx context.Context, o *Offer) error
	// Deliver sends the offer (Unix: the offer frame and the fd in one
	// sendmsg). When it fails, reached reports whether the fd or handle value
	// may nevertheless have reached the backend (for example a partial
	// write); false promises the backend cannot have it.
	Deliver(ctx context.Context, o *Offer) (reached bool, err error)
	// Reclaim takes back a transferred handle the backend provably did not
	// adopt (Windows: DuplicateHandle with DUPLICATE_CLOSE_SOURCE; Unix:
	// return nil). It is called only when o.HandleValue is nonzero and the
	// offer never reached the backend. A non-nil error means the handle stays
	// in the backend and is counted as leaked.
	Reclaim(o *Offer) error
}

// classify maps a transport error to a Reason.
func classify(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(err, ErrPermissionDenied):
		return ReasonPermissionDenied
	case errors.Is(err, ErrIntegrity):
		return ReasonIntegrityMismatch
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		return ReasonCanceled
	default:
		return ReasonTransferFailed
	}
}

// errTransportPanic marks a recovered Transport panic.
var errTransportPanic = errors.New("handoff: transport panicked")

func panicError(v any) error { return fmt.Errorf("%w: %v", errTransportPanic, v) }

func callTransfer(ctx context.Context, t Transport, o *Offer) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(v)
		}
	}()
	return t.Transfer(ctx, o)
}

func callDeliver(ctx context.Context, t Transport, o *Offer) (reached bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			// Unknown how far the send got: assume the backend may have it.
			reached, err = true, panicError(v)
		}
	}()
	return t.Deliver(ctx, o)
}

func callReclaim(t Transport, o *Offer) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = panicError(v)
		}
	}()
	return t.Reclaim(o)
}

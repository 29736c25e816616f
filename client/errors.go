package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// Sentinels matched by *RefusedError (errors.Is), one per refusal code.
var (
	ErrVersionUnsupported = errors.New("portier: protocol version unsupported")
	ErrServiceUnknown     = errors.New("portier: service unknown")
	ErrSpawnFailed        = errors.New("portier: backend failed to start")
	ErrRateLimited        = errors.New("portier: rate limited")
	ErrShuttingDown       = errors.New("portier: broker shutting down")
	ErrPeerRejected       = errors.New("portier: peer rejected")
	ErrInternal           = errors.New("portier: broker internal error")
	ErrVersionBlocked     = errors.New("portier: version blocked")
	ErrFDPressure         = errors.New("portier: broker under descriptor pressure")
	// ErrDefinitionInvalid: the service's definition file exists but the
	// broker cannot use it; RefusedError.Details["definition_error"] says
	// where and why. Fixing the file is enough: the next Dial reads it.
	ErrDefinitionInvalid = errors.New("portier: service definition invalid")
	// ErrServicesDirUnsafe: the broker refuses its services directory (a
	// symbolic link, not a directory, or writable by someone else);
	// RefusedError.Details["problem"] is the stable code of why.
	ErrServicesDirUnsafe = errors.New("portier: services directory unsafe")
)

// Errors of Dial that are not refusals.
var (
	// ErrBrokerUnavailable: the broker's endpoint could not be reached (no
	// broker, an endpoint served by another user, a dial that timed out, or
	// AutoStart gave up). The underlying cause is wrapped too.
	ErrBrokerUnavailable = errors.New("portier: broker unavailable")
	// ErrBrokerMissing: nobody serves the broker's endpoint, so starting
	// one (`portier serve`, or AutoStart) is the fix. On Unix the socket
	// does not exist or refuses connections (a stale socket); on Windows
	// the pipe does not exist (ERROR_FILE_NOT_FOUND), or exists only
	// through connections a broker that has exited handed to backends,
	// with no instance listening. An error matching it matches
	// ErrBrokerUnavailable too.
	ErrBrokerMissing error = brokerMissingError{}
	// ErrBackendUnavailable: backend_pipe could not be dialed on the
	// reconnect route. The broker promises it always can, so this means the
	// backend died between the broker's reply and the dial.
	ErrBackendUnavailable = errors.New("portier: backend endpoint unreachable")
	// ErrProtocol is matched by *ProtocolError.
	ErrProtocol = errors.New("portier: protocol error")
	// ErrInvalidArgument: Dial's arguments would make an invalid Hello (for
	// example a service name outside [a-z0-9-]{1,64}); detected before any
	// connection is made.
	ErrInvalidArgument = errors.New("portier: invalid argument")
)

// brokerMissingError is ErrBrokerMissing: a kind of ErrBrokerUnavailable.
type brokerMissingError struct{}

func (brokerMissingError) Error() string { return "portier: no broker running" }

// Is makes ErrBrokerMissing match ErrBrokerUnavailable.
func (brokerMissingError) Is(target error) bool { return target == ErrBrokerUnavailable }

// RefusedError is the broker's typed refusal of a Hello. errors.Is matches it
// against the sentinel of its Code (ErrServiceUnknown, ErrVersionBlocked, ...).
type RefusedError struct {
	// Code is the stable refusal code.
	Code wire.ErrorCode
	// Reason is the broker's human-readable explanation.
	Reason string
	// RetryAfter is how long to wait before retrying; 0 means retrying will
	// not help.
	RetryAfter time.Duration
	// Details carries machine-readable context, for example "field".
	Details map[string]string
}

// Error names the code and the reason, and the retry delay when there is one.
func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "portier: broker refused: %s", strings.TrimPrefix(e.Code.String(), "ERROR_"))
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is matches the sentinel that belongs to e.Code.
func (e *RefusedError) Is(target error) bool {
	s := codeSentinel(e.Code)
	return s != nil && s == target
}

// codeSentinel maps each refusal code to its sentinel.
// TestEveryRefusalCodeHasASentinel fails when a code of the protocol's enum
// is missing here.
func codeSentinel(c wire.ErrorCode) error {
	switch c {
	case wire.CodeVersionUnsupported:
		return ErrVersionUnsupported
	case wire.CodeServiceUnknown:
		return ErrServiceUnknown
	case wire.CodeBackendSpawnFailed:
		return ErrSpawnFailed
	case wire.CodeRateLimited:
		return ErrRateLimited
	case wire.CodeShuttingDown:
		return ErrShuttingDown
	case wire.CodePeerRejected:
		return ErrPeerRejected
	case wire.CodeInternal:
		return ErrInternal
	case wire.CodeVersionBlocked:
		return ErrVersionBlocked
	case wire.CodeFDPressure:
		return ErrFDPressure
	case wire.CodeDefinitionInvalid:
		return ErrDefinitionInvalid
	case wire.CodeServicesDirUnsafe:
		return ErrServicesDirUnsafe
	}
	return nil
}

func refusedError(r *pb.Refused) *RefusedError {
	e := &RefusedError{Code: wire.ErrorCode(r.GetCode()), Reason: r.GetReason(), Details: r.GetDetails()}
	if ms := r.GetRetryAfterMs(); ms > 0 {
		// Cap the conversion so a hostile value cannot overflow Duration.
		e.RetryAfter = time.Duration(min(ms, uint64(24*time.Hour/time.Millisecond))) * time.Millisecond
	}
	return e
}

// ProtocolError reports a broker that broke the protocol before or in its
// reply to the Hello: the connection ended or failed before a reply, the
// reply was malformed, or it was not a HelloReply to this Hello. (Failures
// after Negotiated are not errors: they take the reconnect route.)
type ProtocolError struct {
	// Op is the step that failed, for example "read hello reply".
	Op string
	// Err is the cause: io.EOF, a wire error, a decode error, ...
	Err error
}

func (e *ProtocolError) Error() string {
	return "portier: protocol error: " + e.Op + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *ProtocolError) Unwrap() error { return e.Err }

// Is matches ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

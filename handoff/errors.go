package handoff

import (
	"errors"
	"strconv"

	"github.com/portier/portier/wire"
)

// Sentinel errors. Callers test for them with errors.Is; the package wraps
// them (with %w) when it adds context.
var (
	// ErrTokenLength reports a token that is not exactly wire.TokenLen bytes.
	ErrTokenLength = errors.New("handoff: token must be " + strconv.Itoa(wire.TokenLen) + " bytes")

	// ErrNotPending reports an ACK for a connection id that has no attempt
	// awaiting one: unknown, already settled (its token consumed or revoked),
	// or its offer not yet being delivered. ErrTokenExpired also matches it.
	ErrNotPending = errors.New("handoff: token not pending")

	// ErrTokenMismatch reports that the presented token differs from the
	// expected one. Nothing is consumed: the expected token stays pending.
	ErrTokenMismatch = errors.New("handoff: presented token does not match")

	// ErrAckLate reports an ACK presented at or after its deadline. The token
	// has been revoked.
	ErrAckLate = errors.New("handoff: ACK after its deadline")

	// ErrPermissionDenied is for Transport implementations to wrap when the
	// OS refused to move the connection (for example OpenProcess or sendmsg
	// failing with EPERM/EACCES/ERROR_ACCESS_DENIED). The orchestrator maps it
	// to ReasonPermissionDenied.
	ErrPermissionDenied = errors.New("handoff: permission denied")

	// ErrIntegrity is for Transport implementations to wrap when the peer or
	// the transferred object is not what was expected (wrong peer process,
	// truncated control message, handle of the wrong type). The orchestrator
	// maps it to ReasonIntegrityMismatch.
	ErrIntegrity = errors.New("handoff: integrity mismatch")
)

// ErrTokenExpired reports a token whose TTL has passed; the attempt it
// belonged to falls back. Because an expired token is no longer pending, the
// error also matches ErrNotPending: errors.Is(err, ErrNotPending) is true for
// it, so callers that only distinguish "pending or not" need no extra case.
var ErrTokenExpired error = expiredError{}

type expiredError struct{}

func (expiredError) Error() string { return "handoff: token expired" }

// Is makes ErrTokenExpired match ErrNotPending as well as itself.
func (expiredError) Is(target error) bool { return target == ErrNotPending }

// Why Begin could not issue a token. They never leave the package except as
// the text of Decision.Detail.
var (
	// errPendingFull: Config.MaxPending tokens are live.
	errPendingFull = errors.New("handoff: too many pending tokens")

	// errCollision: every draw from the random source was the zero token or
	// a live token, within Config.CollisionRetries retries. With crypto/rand
	// this means the random source is broken.
	errCollision = errors.New("handoff: token collision retries exhausted")

	// errRandom: the random source failed; its error is wrapped as well.
	errRandom = errors.New("handoff: random source failed")
)

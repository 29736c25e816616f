package handoff

import (
	"log/slog"
	"strconv"
)

// Stage names the step of a handoff at which its outcome was decided. Its
// String form is a stable snake_case name, suitable as a metric label.
type Stage int

// Stages, in the order a handoff passes through them.
const (
	// StageDecide: Begin's decision (policy, in-flight bound, token issue).
	StageDecide Stage = iota
	// StageTransfer: making the connection available to the backend
	// (Transport.Transfer). Attempts that end before any transport call
	// (abandoned before Start, never started, a context already done)
	// report this stage too: nothing was sent to the backend.
	StageTransfer
	// StageDeliver: sending the offer (Transport.Deliver).
	StageDeliver
	// StageAwaitAck: waiting for the backend's ACK.
	StageAwaitAck
	// StageAcknowledge: settling the ACK (token check, deadline, accept or
	// reject). A completed handoff reports this stage.
	StageAcknowledge

	numStages
)

var stageNames = [numStages]string{
	StageDecide:      "decide",
	StageTransfer:    "transfer",
	StageDeliver:     "deliver",
	StageAwaitAck:    "await_ack",
	StageAcknowledge: "acknowledge",
}

// String returns the stage's stable snake_case name, or "stage(N)" for a
// value outside the defined set.
func (s Stage) String() string {
	if s >= 0 && s < numStages {
		return stageNames[s]
	}
	return "stage(" + strconv.Itoa(int(s)) + ")"
}

// Reason says why a handoff was not attempted or did not complete. Its String
// form is a stable snake_case name, suitable as a metric label.
type Reason int

// Reasons. The order (and so the numeric values) may grow at the end only.
const (
	// ReasonNone: no fallback (the attempt proceeds or completed).
	ReasonNone Reason = iota
	// ReasonClientUnsupported: the client did not offer CAP_HANDLE_PASSING.
	ReasonClientUnsupported
	// ReasonPolicyDisabled: the service definition disables handoff.
	ReasonPolicyDisabled
	// ReasonBackendNotCapable: the backend is not handoff-capable (it does not
	// use portier's backend package, or has no control connection).
	ReasonBackendNotCapable
	// ReasonFDPressure: the broker is short of descriptors, the in-flight
	// bound is reached, or the cap on pending tokens is.
	ReasonFDPressure
	// ReasonRateLimited: the backend's failed-attempt window is full;
	// Decision.RetryAfter says when attempts resume.
	ReasonRateLimited
	// ReasonPermissionDenied: the OS refused to move the connection
	// (a Transport error wrapping ErrPermissionDenied).
	ReasonPermissionDenied
	// ReasonIntegrityMismatch: the peer or the moved object was not what was
	// expected (a Transport error wrapping ErrIntegrity).
	ReasonIntegrityMismatch
	// ReasonTransferFailed: any other Transport error, a Transport panic, or
	// the transport lost while the attempt was in progress (the broker
	// abandons the attempts of a backend whose control connection closed).
	ReasonTransferFailed
	// ReasonBackendRejected: the backend answered with a negative ACK.
	ReasonBackendRejected
	// ReasonAckTimeout: no ACK before the deadline, a late ACK, an expired
	// token, or an attempt that was neither started nor abandoned in time.
	ReasonAckTimeout
	// ReasonCanceled: the caller's context ended (broker shutdown, connection
	// deadline) or the broker abandoned the attempt. Not counted against the
	// backend's failure window.
	ReasonCanceled
	// ReasonInternal: a broker-side fault that is nobody's peer's doing: the
	// random source failed or kept colliding, a connection id was reused
	// while in flight, Start was given a nil Transport or called twice. Not
	// counted against the backend's failure window.
	ReasonInternal

	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:              "none",
	ReasonClientUnsupported: "client_unsupported",
	ReasonPolicyDisabled:    "policy_disabled",
	ReasonBackendNotCapable: "backend_not_capable",
	ReasonFDPressure:        "fd_pressure",
	ReasonRateLimited:       "rate_limited",
	ReasonPermissionDenied:  "permission_denied",
	ReasonIntegrityMismatch: "integrity_mismatch",
	ReasonTransferFailed:    "transfer_failed",
	ReasonBackendRejected:   "backend_rejected",
	ReasonAckTimeout:        "ack_timeout",
	ReasonCanceled:          "canceled",
	ReasonInternal:          "internal_error",
}

// String returns the reason's stable snake_case name, or "reason(N)" for a
// value outside the defined set.
func (r Reason) String() string {
	if r >= 0 && r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// backendFault reports whether a failure with this reason counts against the
// backend's failed-attempt window.
func (r Reason) backendFault() bool {
	switch r {
	case ReasonPermissionDenied, ReasonIntegrityMismatch, ReasonTransferFailed,
		ReasonBackendRejected, ReasonAckTimeout:
		return true
	}
	return false
}

// Outcome is the result of one handoff attempt.
type Outcome struct {
	// Completed is true when the backend acknowledged and adopted the
	// connection in time. Otherwise the outcome is a fallback: the client
	// takes the reconnect route.
	Completed bool
	// Stage is where the outcome was decided (StageAcknowledge when
	// Completed).
	Stage Stage
	// Reason is ReasonNone when Completed, else why the handoff fell back.
	Reason Reason
	// Reached is true when the fd or handle may have reached the backend
	// (the offer was delivered, or Deliver failed but could not rule it out).
	Reached bool
	// Leaked is true when a handle duplicated into the backend (Windows)
	// remains there unaccounted: the backend did not adopt or reject it and
	// it could not be reclaimed. Always false for Unix transports.
	Leaked bool
	// Reclaimed is true when a handle duplicated into the backend was taken
	// back with Transport.Reclaim.
	Reclaimed bool
	// HandleValue is the handle value Transfer placed in the backend
	// (Offer.HandleValue), 0 when none was (always on Unix). It names the
	// handle a Leaked outcome left there, for the log.
	HandleValue uint64
	// Detail is a human-readable explanation (a transport error's text, a
	// backend's rejection detail, truncated). It never contains a token.
	Detail string
}

// LogValue renders the outcome as a slog group.
func (o Outcome) LogValue() slog.Value {
	if o.Completed {
		return slog.GroupValue(slog.Bool("completed", true))
	}
	return slog.GroupValue(
		slog.Bool("completed", false),
		slog.String("stage", o.Stage.String()),
		slog.String("reason", o.Reason.String()),
		slog.Bool("reached", o.Reached),
		slog.Bool("leaked", o.Leaked),
		slog.Bool("reclaimed", o.Reclaimed),
		slog.Uint64("handle_value", o.HandleValue),
		slog.String("detail", o.Detail),
	)
}

// Stats is a snapshot of an orchestrator's counters.
type Stats struct {
	// Attempts counts Begin calls that returned an Attempt.
	Attempts uint64
	// Completed counts completed handoffs.
	Completed uint64
	// Fallbacks counts fallbacks by stage and reason: Fallbacks[s][r] for
	// Stage(s), Reason(r). Stage StageDecide holds Begin's refusals; the
	// other stages hold attempts that fell back.
	Fallbacks [numStages][numReasons]uint64
	// Leaked counts outcomes with Leaked set; Reclaimed those with Reclaimed.
	Leaked, Reclaimed uint64
	// InFlight is the number of attempts begun and not yet finished.
	InFlight int
	// Pending is the number of attempts in the pending table: begun and not
	// yet acknowledged, failed, timed out or abandoned. (One whose token
	// passed its TTL stays counted until its attempt ends.)
	Pending int
}

// Fallback returns the count for one stage and reason (0 when out of range).
func (s Stats) Fallback(st Stage, r Reason) uint64 {
	if st < 0 || st >= numStages || r < 0 || r >= numReasons {
		return 0
	}
	return s.Fallbacks[st][r]
}

// TotalFallbacks sums Fallbacks over the stages after StageDecide, i.e. the
// attempts that were begun and fell back.
func (s Stats) TotalFallbacks() uint64 {
	var n uint64
	for st := StageTransfer; st < numStages; st++ {
		for _, c := range s.Fallbacks[st] {
			n += c
		}
	}
	return n
}

package handoff

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"
)

// attemptState is an Attempt's position in its life cycle; guarded by
// Orchestrator.mu.
type attemptState uint8

const (
	stateBegun        attemptState = iota // Begin returned it; neither Start nor Abandon yet
	stateTransferring                     // Transfer running; ACKs refused, Abandon deferred
	stateDelivering                       // Deliver running; ACKs accepted, Abandon deferred
	stateAwaiting                         // offer out; the ACK, the deadline or Abandon ends it
	stateClosing                          // out of the pending table (token revoked), Reclaim running
	stateDone                             // outcome set, slot released
)

// Attempt is one handoff that Begin decided to attempt. Start moves the
// connection to the backend; Abandon gives the attempt up at any point. (If
// the broker forgets both, Begin reclaims it lazily after its ACK deadline.)
// Its methods are safe for concurrent use; a nil *Attempt is safe to call
// and behaves as a finished attempt.
type Attempt struct {
	o           *Orchestrator
	key         BackendKey
	token       Token
	connID      uint64
	tokenExpiry time.Time // Begin + Config.TokenTTL
	deadline    time.Time // Begin + Config.AckDeadline

	// offer is handed to the Transport and written only by Start's
	// goroutine (Transfer may set HandleValue). Others read HandleValue
	// only in stateAwaiting, which Start enters under o.mu after Transfer.
	offer Offer

	// The rest is guarded by o.mu.
	state   attemptState
	outcome Outcome // final once state == stateDone

	// abandonReason is set (never ReasonNone) by an Abandon that arrived
	// while a transport call ran; Start applies it when the call returns.
	abandonReason Reason
	abandonDetail string

	// finish, expiry and stopCtx are set by Start while the ACK is
	// awaited. completeLocked stops the timers and hands finish to whoever
	// completed the attempt, which calls it once o.mu is released.
	finish  func(Outcome)
	expiry  *time.Timer
	stopCtx func() bool
}

// Token returns the attempt's one-time token, for Negotiated. (Zero for a
// nil Attempt.)
func (a *Attempt) Token() Token {
	if a == nil {
		return Token{}
	}
	return a.token
}

// ConnectionID returns the connection id given to Begin.
func (a *Attempt) ConnectionID() uint64 {
	if a == nil {
		return 0
	}
	return a.connID
}

// Deadline returns the time by which the backend's ACK must arrive. The
// broker can use it to bound its own writes (Negotiated) for this attempt.
func (a *Attempt) Deadline() time.Time {
	if a == nil {
		return time.Time{}
	}
	return a.deadline
}

// Format prints the attempt without its token.
func (a *Attempt) Format(f fmt.State, _ rune) {
	if a == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	_, _ = io.WriteString(f, "handoff.Attempt{conn="+strconv.FormatUint(a.connID, 10)+
		" service="+strconv.Quote(a.offer.Service)+" token=(redacted)}")
}

// LogValue renders the attempt for slog without its token.
func (a *Attempt) LogValue() slog.Value {
	if a == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(
		slog.Uint64("conn_id", a.connID),
		slog.String("service", a.key.Service),
		slog.String("version", a.key.Version),
	)
}

// Start performs the handoff: Transfer and Deliver on the caller's
// goroutine, then it returns while the attempt awaits its ACK (delivered
// through Orchestrator.Ack). finish receives the outcome exactly once, with
// no lock held: on the caller's goroutine before Start returns when the
// outcome is known by the time Deliver returns (a failure, an abandonment,
// or an ACK that arrived meanwhile); otherwise on the goroutine that calls
// Ack or Abandon, or on a timer's goroutine at the ACK deadline or when ctx
// ends. No goroutine waits per handoff in flight: the broker's control
// connection reader completes the attempt when the ACK arrives.
//
// ctx is passed to Transfer and Deliver; when it ends before the outcome is
// known, the attempt falls back with ReasonCanceled. Whatever happens, the
// in-flight slot is released, the token consumed or revoked, and the result
// recorded in the counters and the backend's failure window (failures
// caused by ctx or by the broker are not counted against the backend). It
// never panics on a transport error; a panicking Transport is recovered.
//
// Handle accounting: when Transfer set Offer.HandleValue and the offer
// provably did not reach the backend (Transfer failed, ctx ended or the
// attempt was abandoned before Deliver, or Deliver failed with
// reached=false), Start calls Reclaim; otherwise, if the backend neither
// adopted (ACK) nor rejected (NACK) the handle, the outcome is Leaked.
//
// An accepted ACK that arrives while Deliver is still running (or even
// though Deliver then reports an error) wins: the backend has the
// connection, so the outcome is Completed.
//
// Start must be called at most once. On an attempt already finished (by
// Abandon, or the lazy reclaim of a forgotten attempt) it reports that
// outcome without calling t; a second call while the first is in progress
// reports a ReasonInternal outcome to its own finish without touching the
// attempt.
func (a *Attempt) Start(ctx context.Context, t Transport, finish func(Outcome)) {
	if finish == nil {
		finish = func(Outcome) {}
	}
	if a == nil || a.o == nil {
		finish(Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Start on a nil Attempt"})
		return
	}
	if out, known := a.start(ctx, t, finish); known {
		finish(out)
	}
}

// start is Start's body. It returns the outcome and true when the outcome
// is known before the ACK wait; otherwise it has registered finish for the
// ACK, the deadline, Abandon or ctx to call, and returns false.
func (a *Attempt) start(ctx context.Context, t Transport, finish func(Outcome)) (Outcome, bool) {
	o := a.o
	o.mu.Lock()
	switch a.state {
	case stateBegun:
		a.state = stateTransferring
		o.begun--
	case stateDone:
		out := a.outcome
		o.mu.Unlock()
		return out, true
	default:
		o.mu.Unlock()
		return Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Start called twice"}, true
	}
	o.mu.Unlock()

	if t == nil {
		return a.failBeforeOffer(nil, StageTransfer, ReasonInternal, "handoff: nil Transport"), true
	}
	if err := ctx.Err(); err != nil {
		return a.failBeforeOffer(t, StageTransfer, ReasonCanceled, err.Error()), true
	}
	if err := callTransfer(ctx, t, &a.offer); err != nil {
		return a.failBeforeOffer(t, StageTransfer, classify(ctx, err), err.Error()), true
	}
	if err := ctx.Err(); err != nil {
		return a.failBeforeOffer(t, StageDeliver, ReasonCanceled, err.Error()), true
	}

	o.mu.Lock()
	if r := a.abandonReason; r != ReasonNone {
		detail := a.abandonDetail
		o.mu.Unlock()
		return a.failBeforeOffer(t, StageDeliver, r, detail), true
	}
	a.state = stateDelivering // from here on Ack may settle the attempt
	o.mu.Unlock()

	if reached, err := callDeliver(ctx, t, &a.offer); err != nil {
		if !reached {
			return a.failBeforeOffer(t, StageDeliver, classify(ctx, err), err.Error()), true
		}
		return a.failAfterOffer(StageDeliver, classify(ctx, err), err.Error()), true
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	if a.state == stateDone {
		// Fast path: the backend often ACKs before Deliver returns.
		return a.outcome, true
	}
	if r := a.abandonReason; r != ReasonNone {
		out, _ := a.failAfterOfferLocked(StageAwaitAck, r, a.abandonDetail)
		return out, true
	}
	if err := ctx.Err(); err != nil {
		out, _ := a.failAfterOfferLocked(StageAwaitAck, ReasonCanceled, err.Error())
		return out, true
	}
	wait := a.deadline.Sub(o.now())
	if wait <= 0 {
		out, _ := a.failAfterOfferLocked(StageAwaitAck, ReasonAckTimeout, "handoff: ACK deadline passed while the offer was being delivered")
		return out, true
	}
	a.state = stateAwaiting
	a.finish = finish
	a.expiry = time.AfterFunc(wait, a.expire)
	if ctx.Done() != nil {
		a.stopCtx = context.AfterFunc(ctx, func() { a.Abandon(ReasonCanceled, ctx.Err().Error()) })
	}
	return Outcome{}, false
}

// Abandon gives the attempt up: the broker will not, or can no longer, see
// it through, typically because the backend's control connection is gone
// and no ACK can arrive. It revokes the token and records a fallback with
// reason (ReasonCanceled when ReasonNone) and detail, at the stage the
// attempt had reached:
//
//   - Not started: StageTransfer, nothing sent, and not counted against the
//     backend's failure window (nothing was asked of it). This is how the
//     broker gives up an attempt whose Negotiated could not be written.
//   - Transfer or Deliver running: the running call is let finish, because
//     its result says where the connection is; then a transport error wins,
//     a Transfer that succeeded is followed by Reclaim (the offer never went
//     out: StageDeliver), and a Deliver that succeeded ends in
//     StageAwaitAck. An ACK taken meanwhile wins over the abandonment.
//   - Awaiting the ACK: StageAwaitAck at once.
//
// A handle value duplicated into the backend (Offer.HandleValue) whose offer
// may have reached it is counted as Leaked: with the control connection gone
// the broker will never learn whether the backend adopted or closed it, and
// reclaiming it could close a handle the backend already owns. Only a
// handle whose offer provably never went out is reclaimed.
//
// Abandonments after Start count against the backend's failure window when
// reason is a backend fault (ReasonTransferFailed for a lost control
// connection is; ReasonCanceled is not). Start's finish receives the outcome
// as usual. Abandon returns the outcome if the attempt is finished when it
// returns (then also on a finished attempt, which it leaves alone), and the
// zero Outcome while a transport call still runs.
func (a *Attempt) Abandon(reason Reason, detail string) Outcome {
	if a == nil || a.o == nil {
		return Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Abandon on a nil Attempt"}
	}
	if reason == ReasonNone {
		reason = ReasonCanceled
	}
	o := a.o
	o.mu.Lock()
	switch a.state {
	case stateBegun:
		o.begun--
		o.detachLocked(a)
		o.completeLocked(a, Outcome{Stage: StageTransfer, Reason: reason, Detail: detail}, false)
	case stateTransferring, stateDelivering:
		if a.abandonReason == ReasonNone {
			a.abandonReason, a.abandonDetail = reason, detail
		}
	case stateAwaiting:
		out, finish := a.failAfterOfferLocked(StageAwaitAck, reason, detail)
		o.mu.Unlock()
		finish(out)
		return out
	}
	var out Outcome
	if a.state == stateDone {
		out = a.outcome
	}
	o.mu.Unlock()
	return out
}

// expire completes a started attempt whose ACK did not arrive in time. A
// timer that fires while an ACK or Abandon completes the attempt finds it
// done and changes nothing.
func (a *Attempt) expire() {
	a.o.mu.Lock()
	out, finish := a.failAfterOfferLocked(StageAwaitAck, ReasonAckTimeout, "handoff: no ACK before the deadline")
	a.o.mu.Unlock()
	finish(out)
}

// failBeforeOffer finishes a that failed at stage while the offer cannot have
// reached the backend, reclaiming a handle Transfer placed in the backend.
// If an ACK settled a meanwhile, that outcome stands. It runs before finish
// is registered, so it has no callback to hand back.
func (a *Attempt) failBeforeOffer(t Transport, st Stage, r Reason, detail string) Outcome {
	o := a.o
	o.mu.Lock()
	if a.state == stateDone {
		out := a.outcome
		o.mu.Unlock()
		return out
	}
	o.detachLocked(a)
	o.mu.Unlock()

	out := Outcome{Stage: st, Reason: r, Detail: detail}
	if a.offer.HandleValue != 0 && t != nil {
		if err := callReclaim(t, &a.offer); err != nil {
			out.Leaked = true
			out.Detail += "; reclaim failed: " + err.Error()
		} else {
			out.Reclaimed = true
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.completeLocked(a, out, true)
	return a.outcome
}

// failAfterOffer is failAfterOfferLocked for Start's goroutine, before
// finish is registered.
func (a *Attempt) failAfterOffer(st Stage, r Reason, detail string) Outcome {
	a.o.mu.Lock()
	defer a.o.mu.Unlock()
	out, _ := a.failAfterOfferLocked(st, r, detail)
	return out
}

// failAfterOfferLocked finishes a that failed at stage after the offer may
// have reached the backend. A handle in the backend is then neither adopted
// nor reclaimable, hence leaked. If an ACK settled a meanwhile, that outcome
// stands. It returns the outcome and the finish callback to run once o.mu
// is released (a no-op when Start has not registered one).
func (a *Attempt) failAfterOfferLocked(st Stage, r Reason, detail string) (Outcome, func(Outcome)) {
	if a.state == stateDone {
		return a.outcome, func(Outcome) {}
	}
	a.o.detachLocked(a)
	finish := a.o.completeLocked(a, Outcome{
		Stage:   st,
		Reason:  r,
		Reached: true,
		Leaked:  a.offer.HandleValue != 0,
		Detail:  detail,
	}, true)
	if finish == nil {
		finish = func(Outcome) {}
	}
	return a.outcome, finish
}

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
	stateBegun        attemptState = iota // Begin returned it; neither Run nor Cancel yet
	stateTransferring                     // Run started; ACKs are refused
	stateDelivering                       // offer (about to be) out; ACKs accepted
	stateClosing                          // detached (token revoked), Reclaim in progress
	stateDone                             // outcome set, slot released, done closed
)

// Attempt is one handoff that Begin decided to attempt. Exactly one of Run
// or Cancel finishes it (or, if the broker forgets both, Begin reclaims it
// lazily after its ACK deadline). Its methods are safe for concurrent use;
// a nil *Attempt is safe to call and behaves as a finished attempt.
type Attempt struct {
	o        *Orchestrator
	key      BackendKey
	token    Token
	connID   uint64
	deadline time.Time
	// done is closed when the attempt reaches stateDone. It is made lazily,
	// only when Run has to wait for the ACK, so the common case (the ACK
	// arrives before Deliver returns) allocates no channel. Guarded by o.mu.
	done chan struct{}

	offer Offer // handed to the Transport; only Run's goroutine touches it

	state   attemptState // guarded by o.mu
	outcome Outcome      // guarded by o.mu; final once state == stateDone

	// finish and expiry are set by Start while the ACK is awaited; guarded
	// by o.mu. completeLocked hands finish to whoever completed the
	// attempt, which calls it once o.mu is released.
	finish func(Outcome)
	expiry *time.Timer
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

// Cancel abandons an attempt that has not reached Run, for example because
// writing Negotiated to the client failed: it revokes the token, removes the
// pending entry, releases the in-flight slot and records a fallback at
// StageTransfer with reason (ReasonCanceled if reason is ReasonNone) and
// detail. Cancel does not count against the backend's failure window. It is
// idempotent: once the attempt is finished (by Cancel or Run) it returns
// that outcome. While Run is in progress it does nothing and returns the zero
// Outcome; Run reports the outcome.
func (a *Attempt) Cancel(reason Reason, detail string) Outcome {
	if a == nil || a.o == nil {
		return Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Cancel on a nil Attempt"}
	}
	if reason == ReasonNone {
		reason = ReasonCanceled
	}
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	switch a.state {
	case stateBegun:
		o.begun--
		o.detachLocked(a)
		o.completeLocked(a, Outcome{Stage: StageTransfer, Reason: reason, Detail: detail}, false)
		return a.outcome
	case stateDone:
		return a.outcome
	default:
		return Outcome{}
	}
}

// Run performs the handoff: Transfer, Deliver, then waits for the ACK
// (delivered through Orchestrator.Ack) until the ACK deadline or until ctx is
// done, and returns the outcome. Whatever happens it releases the in-flight
// slot, leaves no pending token or registry entry, and records the result in
// the counters and the backend's failure window (failures caused by ctx or
// by the broker are not counted against the backend). It never panics on a
// transport error; a panicking Transport is recovered.
//
// Handle accounting: when Transfer set Offer.HandleValue and the offer
// provably did not reach the backend (Transfer failed, ctx ended before
// Deliver, or Deliver failed with reached=false), Run calls Reclaim;
// otherwise, if the backend neither adopted (ACK) nor rejected (NACK) the
// handle, the outcome is Leaked.
//
// An accepted ACK that arrives while Deliver is still running (or even
// though Deliver then reports an error) wins: the backend has the
// connection, so the outcome is Completed.
//
// Run must be called at most once; after Cancel (or the lazy reclaim of a
// forgotten attempt) it returns that outcome without calling t, and a second
// concurrent call returns a ReasonInternal outcome without touching the
// attempt.
func (a *Attempt) Run(ctx context.Context, t Transport) Outcome {
	if a == nil || a.o == nil {
		return Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Run on a nil Attempt"}
	}
	o := a.o
	o.mu.Lock()
	switch a.state {
	case stateBegun:
		a.state = stateTransferring
		o.begun--
	case stateDone:
		out := a.outcome
		o.mu.Unlock()
		return out
	default:
		o.mu.Unlock()
		return Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Run called twice"}
	}
	o.mu.Unlock()

	if t == nil {
		return a.failBeforeOffer(nil, StageTransfer, ReasonInternal, "handoff: nil Transport")
	}
	if err := ctx.Err(); err != nil {
		return a.failBeforeOffer(t, StageTransfer, ReasonCanceled, err.Error())
	}
	if err := callTransfer(ctx, t, &a.offer); err != nil {
		return a.failBeforeOffer(t, StageTransfer, classify(ctx, err), err.Error())
	}
	if err := ctx.Err(); err != nil {
		return a.failBeforeOffer(t, StageDeliver, ReasonCanceled, err.Error())
	}

	o.mu.Lock()
	a.state = stateDelivering // from here on Ack may settle the attempt
	o.mu.Unlock()

	if reached, err := callDeliver(ctx, t, &a.offer); err != nil {
		if !reached {
			return a.failBeforeOffer(t, StageDeliver, classify(ctx, err), err.Error())
		}
		return a.failAfterOffer(StageDeliver, classify(ctx, err), err.Error())
	}

	// Fast path: the backend often ACKs before Deliver returns.
	o.mu.Lock()
	if a.state == stateDone {
		out := a.outcome
		o.mu.Unlock()
		return out
	}
	wait := a.deadline.Sub(o.now())
	if wait <= 0 {
		o.mu.Unlock()
		return a.failAfterOffer(StageAwaitAck, ReasonAckTimeout, "handoff: ACK deadline passed while the offer was being delivered")
	}
	a.done = make(chan struct{})
	done := a.done
	o.mu.Unlock()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-done:
		o.mu.Lock()
		defer o.mu.Unlock()
		return a.outcome
	case <-timer.C:
		return a.failAfterOffer(StageAwaitAck, ReasonAckTimeout, "handoff: no ACK before the deadline")
	case <-ctx.Done():
		return a.failAfterOffer(StageAwaitAck, ReasonCanceled, ctx.Err().Error())
	}
}

// Start is Run without the wait: it performs Transfer and Deliver on the
// caller's goroutine and then returns, and finish receives the outcome
// exactly once, with no lock held: on the caller's goroutine when the
// outcome is known by the time Deliver returns (a failure, or an ACK that
// arrived meanwhile), else on the goroutine that calls Ack, or on a timer's
// goroutine at the ACK deadline. Accounting is Run's.
//
// The broker uses it so that no goroutine waits per handoff in flight: the
// control connection's reader completes the attempt when the ACK arrives,
// which saves a goroutine wake-up per handoff.
func (a *Attempt) Start(t Transport, finish func(Outcome)) {
	if finish == nil {
		finish = func(Outcome) {}
	}
	if a == nil || a.o == nil {
		finish(Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Start on a nil Attempt"})
		return
	}
	o := a.o
	o.mu.Lock()
	switch a.state {
	case stateBegun:
		a.state = stateTransferring
		o.begun--
	case stateDone:
		out := a.outcome
		o.mu.Unlock()
		finish(out)
		return
	default:
		o.mu.Unlock()
		finish(Outcome{Stage: StageTransfer, Reason: ReasonInternal, Detail: "handoff: Start after Run or Start"})
		return
	}
	o.mu.Unlock()

	ctx := context.Background()
	if t == nil {
		finish(a.failBeforeOffer(nil, StageTransfer, ReasonInternal, "handoff: nil Transport"))
		return
	}
	if err := callTransfer(ctx, t, &a.offer); err != nil {
		finish(a.failBeforeOffer(t, StageTransfer, classify(ctx, err), err.Error()))
		return
	}
	o.mu.Lock()
	a.state = stateDelivering
	o.mu.Unlock()
	if reached, err := callDeliver(ctx, t, &a.offer); err != nil {
		if !reached {
			finish(a.failBeforeOffer(t, StageDeliver, classify(ctx, err), err.Error()))
			return
		}
		finish(a.failAfterOffer(StageDeliver, classify(ctx, err), err.Error()))
		return
	}
	o.mu.Lock()
	if a.state == stateDone {
		out := a.outcome
		o.mu.Unlock()
		finish(out)
		return
	}
	wait := a.deadline.Sub(o.now())
	if wait <= 0 {
		o.mu.Unlock()
		finish(a.failAfterOffer(StageAwaitAck, ReasonAckTimeout, "handoff: ACK deadline passed while the offer was being delivered"))
		return
	}
	a.finish = finish
	a.expiry = time.AfterFunc(wait, a.expire)
	o.mu.Unlock()
}

// expire completes a started attempt whose ACK did not arrive in time.
func (a *Attempt) expire() {
	o := a.o
	o.mu.Lock()
	if a.state == stateDone {
		o.mu.Unlock()
		return
	}
	o.detachLocked(a)
	finish := o.completeLocked(a, Outcome{
		Stage:   StageAwaitAck,
		Reason:  ReasonAckTimeout,
		Reached: true,
		Leaked:  a.offer.HandleValue != 0,
		Detail:  "handoff: no ACK before the deadline",
	}, true)
	out := a.outcome
	o.mu.Unlock()
	if finish != nil {
		finish(out)
	}
}

// failBeforeOffer finishes a that failed at stage while the offer cannot have
// reached the backend, reclaiming a handle Transfer placed in the backend.
// If an ACK settled a meanwhile, that outcome stands.
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
	return out
}

// failAfterOffer finishes a that failed at stage after the offer may have
// reached the backend. A handle in the backend is then neither adopted nor
// reclaimable, hence leaked. If an ACK settled a meanwhile, that outcome
// stands.
func (a *Attempt) failAfterOffer(st Stage, r Reason, detail string) Outcome {
	o := a.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if a.state == stateDone {
		return a.outcome
	}
	o.detachLocked(a)
	o.completeLocked(a, Outcome{
		Stage:   st,
		Reason:  r,
		Reached: true,
		Leaked:  a.offer.HandleValue != 0,
		Detail:  detail,
	}, true)
	return a.outcome
}

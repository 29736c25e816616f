package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
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
	// (Cancel, an attempt never run, a context already done) report this
	// stage too: nothing was sent to the backend.
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
	// Pending is the number of tokens in the token store.
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

// Orchestrator drives handoffs: it decides (Policy, Limiter), issues and
// registers tokens (TokenStore, AckRegistry), runs the transport stages and
// matches ACKs to attempts by connection id. It starts no goroutines;
// stale state is reclaimed lazily. The zero value is not usable; call
// NewOrchestrator. An Orchestrator is safe for concurrent use.
type Orchestrator struct {
	now     func() time.Time
	store   *TokenStore
	acks    *AckRegistry
	policy  *Policy
	limiter *Limiter

	// mu guards attempts, begun and every Attempt's state and outcome. Lock
	// order: mu, then the components' own locks.
	mu       sync.Mutex
	attempts map[uint64]*Attempt // by connection id, until the attempt is detached
	begun    int                 // attempts in stateBegun (candidates for sweep)

	nAttempts, nCompleted, nLeaked, nReclaimed atomic.Uint64
	fallbacks                                  [numStages][numReasons]atomic.Uint64
}

// NewOrchestrator returns an orchestrator configured from cfg (zero fields
// take the defaults documented on Config).
func NewOrchestrator(cfg Config) *Orchestrator {
	c := cfg.withDefaults()
	store := NewTokenStore(c)
	return &Orchestrator{
		now:      c.Now,
		store:    store,
		acks:     NewAckRegistry(store, c.AckDeadline),
		policy:   NewPolicy(c),
		limiter:  NewLimiter(c.MaxInFlight),
		attempts: make(map[uint64]*Attempt),
	}
}

// Stats returns a snapshot of the counters. Counters are read one by one, so
// a snapshot taken while handoffs run may be off by the ones in progress.
func (o *Orchestrator) Stats() Stats {
	s := Stats{
		Attempts:  o.nAttempts.Load(),
		Completed: o.nCompleted.Load(),
		Leaked:    o.nLeaked.Load(),
		Reclaimed: o.nReclaimed.Load(),
		InFlight:  o.limiter.InFlight(),
		Pending:   o.store.Len(),
	}
	for st := range s.Fallbacks {
		for r := range s.Fallbacks[st] {
			s.Fallbacks[st][r] = o.fallbacks[st][r].Load()
		}
	}
	return s
}

// Format prints a summary without any token.
func (o *Orchestrator) Format(f fmt.State, _ rune) {
	if o == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	s := o.Stats()
	_, _ = io.WriteString(f, "handoff.Orchestrator{in_flight="+strconv.Itoa(s.InFlight)+
		" pending="+strconv.Itoa(s.Pending)+"}")
}

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

// Begin decides whether to attempt a handoff of connection connID to backend
// key for service, and if so issues a token, registers the pending ACK (due
// after Config.AckDeadline) and returns the Attempt with Decision{Attempt:
// true}. Otherwise it returns a nil Attempt and the Decision's Reason: the
// Policy's reasons (with RetryAfter for ReasonRateLimited), ReasonFDPressure
// when the in-flight bound or the token store is full, ReasonInternal when no
// token could be drawn or connID is already in flight. Refusals are counted
// under StageDecide. Begin never blocks on a peer.
func (o *Orchestrator) Begin(key BackendKey, connID uint64, service string, in Inputs) (*Attempt, Decision) {
	now := o.now()
	if d := o.policy.ShouldAttempt(key, in, now); !d.Attempt {
		o.countFallback(StageDecide, d.Reason)
		return nil, d
	}
	if !o.limiter.TryAcquire() && !(o.sweep(now) && o.limiter.TryAcquire()) {
		return nil, o.refuse(ReasonFDPressure, "")
	}
	tok, err := o.store.Issue(now)
	if errors.Is(err, ErrPendingFull) && o.sweep(now) {
		tok, err = o.store.Issue(now)
	}
	if err != nil {
		o.limiter.Release()
		if errors.Is(err, ErrPendingFull) {
			return nil, o.refuse(ReasonFDPressure, err.Error())
		}
		return nil, o.refuse(ReasonInternal, err.Error())
	}
	deadline, err := o.acks.Register(tok, key, now)
	if err != nil {
		// Unreachable while the store and registry are private to o, but a
		// refusal is better than a panic.
		o.acks.Abandon(tok)
		o.limiter.Release()
		return nil, o.refuse(ReasonInternal, err.Error())
	}
	a := &Attempt{
		o:        o,
		key:      key,
		token:    tok,
		connID:   connID,
		deadline: deadline,
		offer:    Offer{ConnectionID: connID, Service: service, Token: tok},
	}
	o.mu.Lock()
	if _, dup := o.attempts[connID]; dup {
		o.mu.Unlock()
		o.acks.Abandon(tok)
		o.limiter.Release()
		return nil, o.refuse(ReasonInternal, "handoff: connection id already in flight")
	}
	o.attempts[connID] = a
	o.begun++
	o.mu.Unlock()
	o.nAttempts.Add(1)
	return a, Decision{Attempt: true}
}

func (o *Orchestrator) refuse(r Reason, detail string) Decision {
	o.countFallback(StageDecide, r)
	return Decision{Reason: r, Detail: detail}
}

func (o *Orchestrator) countFallback(st Stage, r Reason) {
	if st >= 0 && st < numStages && r >= 0 && r < numReasons {
		o.fallbacks[st][r].Add(1)
	}
}

// sweep finishes attempts that were begun but neither run nor cancelled by
// their ACK deadline, so a broker bug cannot pin in-flight slots and tokens
// forever. It runs only when Begin finds the limiter or the store full, and
// reports whether it freed anything.
func (o *Orchestrator) sweep(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.begun == 0 {
		return false
	}
	freed := false
	for _, a := range o.attempts {
		if a.state == stateBegun && !now.Before(a.deadline) {
			o.begun--
			o.detachLocked(a)
			o.completeLocked(a, Outcome{
				Stage:  StageTransfer,
				Reason: ReasonAckTimeout,
				Detail: "handoff: attempt neither run nor cancelled before its ACK deadline",
			}, false)
			freed = true
		}
	}
	return freed
}

// detachLocked makes a unreachable: no ACK can find it and its token and
// registry entry are gone.
func (o *Orchestrator) detachLocked(a *Attempt) {
	if o.attempts[a.connID] == a {
		delete(o.attempts, a.connID)
	}
	o.acks.Abandon(a.token)
	a.state = stateClosing
}

// completeLocked records a's outcome, releases its slot, updates counters and
// the failure window (when countFailure and the reason is the backend's
// fault), and wakes Run.
func (o *Orchestrator) completeLocked(a *Attempt, out Outcome, countFailure bool) (finish func(Outcome)) {
	a.outcome = out
	a.state = stateDone
	finish, a.finish = a.finish, nil
	if a.expiry != nil {
		a.expiry.Stop()
		a.expiry = nil
	}
	o.limiter.Release()
	if out.Completed {
		o.nCompleted.Add(1)
		o.policy.RecordSuccess(a.key)
	} else {
		o.countFallback(out.Stage, out.Reason)
		if countFailure && out.Reason.backendFault() {
			o.policy.RecordFailure(a.key, o.now())
		}
	}
	if out.Leaked {
		o.nLeaked.Add(1)
	}
	if out.Reclaimed {
		o.nReclaimed.Add(1)
	}
	if a.done != nil {
		close(a.done)
	}
	return finish
}

// Ack settles the attempt for connection connID with a HandoffAck received at
// at. It compares presented with the attempt's token in constant time and,
// if they match, consumes the token, removes the pending entry and wakes the
// Run waiting on it, which reports Completed (accepted), a fallback with
// ReasonBackendRejected (not accepted; detail is kept, truncated), or a
// fallback with ReasonAckTimeout (late or expired). Errors:
//   - ErrNotPending: no attempt with that id awaits an ACK (unknown, already
//     settled, timed out, or its offer not yet being delivered). Nothing
//     changes.
//   - ErrTokenMismatch: wrong token; nothing changes and the attempt stays
//     pending, so a bogus ACK cannot cancel a real handoff.
//   - ErrTokenExpired (also matches ErrNotPending): the token's TTL passed;
//     the attempt falls back.
//   - ErrAckLate: at is at or after the deadline; the attempt falls back.
//
// A nil error means the ACK was taken, whether accepted or a rejection.
func (o *Orchestrator) Ack(connID uint64, presented Token, accepted bool, detail string, at time.Time) error {
	o.mu.Lock()
	finish, a, err := o.ackLocked(connID, presented, accepted, detail, at)
	var out Outcome
	if a != nil {
		out = a.outcome
	}
	o.mu.Unlock()
	if finish != nil {
		finish(out)
	}
	return err
}

// ackLocked is Ack's body; it returns the finish callback of an attempt
// started with Start that it completed.
func (o *Orchestrator) ackLocked(connID uint64, presented Token, accepted bool, detail string, at time.Time) (func(Outcome), *Attempt, error) {
	a := o.attempts[connID]
	if a == nil || a.state != stateDelivering {
		return nil, nil, ErrNotPending
	}
	if err := o.store.ConsumeMatching(a.token, presented, at); err != nil {
		if errors.Is(err, ErrTokenMismatch) {
			return nil, nil, err
		}
		o.detachLocked(a)
		finish := o.completeLocked(a, Outcome{
			Stage:   StageAcknowledge,
			Reason:  ReasonAckTimeout,
			Reached: true,
			Detail:  err.Error(),
		}, true)
		return finish, a, err
	}
	_, err := o.acks.Acknowledge(a.token, at)
	o.detachLocked(a)
	out := Outcome{Stage: StageAcknowledge, Reached: true}
	switch {
	case err != nil:
		out.Reason = ReasonAckTimeout
		out.Detail = err.Error()
	case !accepted:
		// The backend closed its copy when it rejected, so nothing leaked.
		out.Reason = ReasonBackendRejected
		out.Detail = truncate(detail, maxDetail)
	default:
		out.Completed = true
	}
	finish := o.completeLocked(a, out, true)
	return finish, a, err
}

// maxDetail bounds peer-supplied detail text kept in an Outcome.
const maxDetail = 256

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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

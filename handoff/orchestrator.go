package handoff

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

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

package handoff

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Orchestrator drives handoffs: it decides (policy, in-flight bound, token
// cap), issues tokens, matches ACKs to attempts by connection id and keeps
// the counters. No goroutine runs per attempt: the ACK deadline is a timer
// callback, and an attempt the broker forgot is reclaimed lazily by Begin.
// The zero value is not usable; call NewOrchestrator. An Orchestrator is
// safe for concurrent use.
type Orchestrator struct {
	now         func() time.Time
	ackDeadline time.Duration
	maxInFlight int
	policy      *policy

	// mu guards pending, inFlight, begun and every Attempt's state and
	// outcome. Lock order: mu, then policy.mu.
	mu       sync.Mutex
	pending  pendingTable
	inFlight int // attempts begun and not finished (pending ones and those being reclaimed)
	begun    int // attempts in stateBegun (candidates for sweep)

	nAttempts, nCompleted, nLeaked, nReclaimed atomic.Uint64
	fallbacks                                  [numStages][numReasons]atomic.Uint64
}

// NewOrchestrator returns an orchestrator configured from cfg (zero fields
// take the defaults documented on Config).
func NewOrchestrator(cfg Config) *Orchestrator {
	c := cfg.withDefaults()
	return &Orchestrator{
		now:         c.Now,
		ackDeadline: c.AckDeadline,
		maxInFlight: c.MaxInFlight,
		policy:      newPolicy(c),
		pending:     newPendingTable(c),
	}
}

// ForgetBackend drops what the failed-attempt window recorded for key, a
// backend process that has exited, so a long-running broker does not keep a
// window per dead process until it ages out.
func (o *Orchestrator) ForgetBackend(key BackendKey) { o.policy.forget(key) }

// Stats returns a snapshot of the counters. Counters are read one by one, so
// a snapshot taken while handoffs run may be off by the ones in progress.
func (o *Orchestrator) Stats() Stats {
	o.mu.Lock()
	inFlight, pending := o.inFlight, len(o.pending.byConn)
	o.mu.Unlock()
	s := Stats{
		Attempts:  o.nAttempts.Load(),
		Completed: o.nCompleted.Load(),
		Leaked:    o.nLeaked.Load(),
		Reclaimed: o.nReclaimed.Load(),
		InFlight:  inFlight,
		Pending:   pending,
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
// key for service, and if so issues a token (valid for Config.TokenTTL),
// records the attempt as pending (its ACK due after Config.AckDeadline) and
// returns it with Decision{Attempt: true}. Otherwise it returns a nil
// Attempt and the Decision's Reason: the policy's reasons (with RetryAfter
// for ReasonRateLimited), ReasonFDPressure when the in-flight bound or the
// cap on pending tokens is reached, ReasonInternal when no token could be
// drawn or connID is already in flight. Refusals are counted under
// StageDecide. Begin never blocks on a peer.
func (o *Orchestrator) Begin(key BackendKey, connID uint64, service string, in Inputs) (*Attempt, Decision) {
	now := o.now()
	if d := o.policy.shouldAttempt(key, in, now); !d.Attempt {
		o.countFallback(StageDecide, d.Reason)
		return nil, d
	}
	o.mu.Lock()
	if o.inFlight >= o.maxInFlight && !(o.sweepLocked(now) && o.inFlight < o.maxInFlight) {
		o.mu.Unlock()
		return nil, o.refuse(ReasonFDPressure, "")
	}
	if o.pending.full(now) && !(o.sweepLocked(now) && !o.pending.full(now)) {
		o.mu.Unlock()
		return nil, o.refuse(ReasonFDPressure, errPendingFull.Error())
	}
	tok, err := o.pending.draw(now)
	if err != nil {
		o.mu.Unlock()
		return nil, o.refuse(ReasonInternal, err.Error())
	}
	a := &Attempt{
		o:           o,
		key:         key,
		token:       tok,
		connID:      connID,
		tokenExpiry: now.Add(o.pending.ttl),
		deadline:    now.Add(o.ackDeadline),
		offer:       Offer{ConnectionID: connID, Service: service, Token: tok},
	}
	if !o.pending.add(a) {
		o.mu.Unlock()
		return nil, o.refuse(ReasonInternal, "handoff: connection id already in flight")
	}
	o.inFlight++
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

// sweepLocked finishes attempts that were begun but neither started nor
// abandoned by their ACK deadline, so a broker bug cannot pin in-flight
// slots and tokens forever. It runs only when Begin finds the in-flight
// bound or the token cap reached, and reports whether it freed anything.
func (o *Orchestrator) sweepLocked(now time.Time) bool {
	if o.begun == 0 {
		return false
	}
	freed := false
	for _, a := range o.pending.byConn {
		if a.state == stateBegun && !now.Before(a.deadline) {
			o.begun--
			o.detachLocked(a)
			o.completeLocked(a, Outcome{
				Stage:  StageTransfer,
				Reason: ReasonAckTimeout,
				Detail: "handoff: attempt neither started nor abandoned before its ACK deadline",
			}, false)
			freed = true
		}
	}
	return freed
}

// detachLocked takes a out of the pending table: no ACK can find it any
// more and its token is revoked.
func (o *Orchestrator) detachLocked(a *Attempt) {
	o.pending.remove(a)
	a.state = stateClosing
}

// completeLocked records a's outcome, releases its in-flight slot, updates
// the counters and the failure window (when countFailure and the reason is
// the backend's fault), and hands back the finish callback of a started
// attempt, for the caller to run once mu is released.
func (o *Orchestrator) completeLocked(a *Attempt, out Outcome, countFailure bool) (finish func(Outcome)) {
	// Transfer, the only writer of HandleValue, has returned by now: a is
	// completed either on Start's goroutine or once Start moved it on
	// under o.mu (or before Start ever ran).
	out.HandleValue = a.offer.HandleValue
	a.outcome = out
	a.state = stateDone
	finish, a.finish = a.finish, nil
	if a.expiry != nil {
		a.expiry.Stop()
		a.expiry = nil
	}
	if a.stopCtx != nil {
		a.stopCtx()
		a.stopCtx = nil
	}
	o.inFlight--
	if out.Completed {
		o.nCompleted.Add(1)
		o.policy.recordSuccess(a.key)
	} else {
		o.countFallback(out.Stage, out.Reason)
		if countFailure && out.Reason.backendFault() {
			o.policy.recordFailure(a.key, o.now())
		}
	}
	if out.Leaked {
		o.nLeaked.Add(1)
	}
	if out.Reclaimed {
		o.nReclaimed.Add(1)
	}
	return finish
}

// Ack settles the attempt for connection connID with a HandoffAck received at
// at. It compares presented with the attempt's token in constant time and,
// if they match, consumes the token and completes the attempt: Completed
// (accepted), a fallback with ReasonBackendRejected (not accepted; detail is
// kept, truncated), or a fallback with ReasonAckTimeout (late or expired).
// The attempt's finish callback runs on the caller's goroutine before Ack
// returns, unless the offer is still being delivered (Start then reports).
// Errors:
//   - ErrNotPending: no attempt with that id awaits an ACK (unknown, already
//     settled, timed out, abandoned, or its offer not yet being delivered).
//     Nothing changes.
//   - ErrTokenMismatch: wrong token; nothing changes and the attempt stays
//     pending, so a bogus ACK cannot cancel a real handoff.
//   - ErrTokenExpired (also matches ErrNotPending): the token's TTL passed;
//     the attempt falls back.
//   - ErrAckLate: at is at or after the deadline; the attempt falls back.
//
// A nil error means the ACK was taken, whether accepted or a rejection.
func (o *Orchestrator) Ack(connID uint64, presented Token, accepted bool, detail string, at time.Time) error {
	o.mu.Lock()
	finish, out, err := o.ackLocked(connID, presented, accepted, detail, at)
	o.mu.Unlock()
	if finish != nil {
		finish(out)
	}
	return err
}

// ackLocked is Ack's body.
func (o *Orchestrator) ackLocked(connID uint64, presented Token, accepted bool, detail string, at time.Time) (func(Outcome), Outcome, error) {
	a := o.pending.byConn[connID]
	if a == nil || (a.state != stateDelivering && a.state != stateAwaiting) {
		return nil, Outcome{}, ErrNotPending
	}
	out := Outcome{Stage: StageAcknowledge, Reached: true}
	var err error
	switch {
	case !at.Before(a.tokenExpiry):
		// Checked before the token itself: an expired token can never be
		// consumed, so the attempt is over whatever was presented.
		err = ErrTokenExpired
		out.Reason, out.Detail = ReasonAckTimeout, err.Error()
	case !a.token.Equal(presented):
		return nil, Outcome{}, ErrTokenMismatch
	case !at.Before(a.deadline):
		err = ErrAckLate
		out.Reason, out.Detail = ReasonAckTimeout, err.Error()
	case !accepted:
		// The backend closed its copy when it rejected, so nothing leaked.
		out.Reason, out.Detail = ReasonBackendRejected, truncate(detail, maxDetail)
	default:
		out.Completed = true
	}
	o.detachLocked(a)
	finish := o.completeLocked(a, out, true)
	return finish, a.outcome, err
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

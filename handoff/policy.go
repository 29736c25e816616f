package handoff

import (
	"sync"
	"time"
)

// BackendKey identifies a backend process for the failed-attempt window:
// one window per process. A new process of the same service and version
// (started after the old one died, or after a restart) is a new key, so it
// does not inherit the failures of the one before it: those said something
// about a process that is gone.
type BackendKey struct {
	Service string
	Version string
	// PID and StartTime identify the process (StartTime as
	// ipc.ProcessStartTime reports it), so a reused pid is a new key too.
	// Zero when the caller has no process yet.
	PID       int
	StartTime uint64
}

// Inputs are the facts the broker knows when it decides whether to attempt a
// handoff.
type Inputs struct {
	// ClientCapable: the client's Hello offered CAP_HANDLE_PASSING.
	ClientCapable bool
	// PolicyEnabled: the service definition allows handoff.
	PolicyEnabled bool
	// BackendCapable: the backend has a verified portier control connection.
	BackendCapable bool
	// FDPressure: the broker is close to its descriptor limit.
	FDPressure bool
}

// Decision is the answer to "attempt a handoff?".
type Decision struct {
	// Attempt is true when the handoff should be attempted.
	Attempt bool
	// Reason is ReasonNone when Attempt is true, else why not.
	Reason Reason
	// RetryAfter is set for ReasonRateLimited: how long until the backend's
	// failed-attempt window lets attempts through again.
	RetryAfter time.Duration
	// Detail is a human-readable addition for internal failures (never a
	// token); empty otherwise.
	Detail string
}

// maxTrackedBackends bounds the policy's per-backend map. When it is full
// and stale windows cannot be dropped, new failures for untracked backends
// are not recorded: attempts stay allowed, which is safe because every
// failed attempt already falls back.
const maxTrackedBackends = 4096

// policy decides whether to attempt a handoff from the Inputs and a sliding
// failed-attempt window per backend: when limit failures fall within window,
// attempts are suppressed until the oldest of them leaves the window;
// recordSuccess clears the backend's window. It has its own lock, taken
// after Orchestrator.mu when both are held.
type policy struct {
	limit  int
	window time.Duration

	mu    sync.Mutex
	fails map[BackendKey]*failureRing
}

// failureRing holds the times of a backend's most recent failures, at most
// limit of them; once full, times[next] is the oldest.
type failureRing struct {
	times []time.Time
	next  int
	full  bool
}

func (r *failureRing) newest() time.Time {
	return r.times[(r.next+len(r.times)-1)%len(r.times)]
}

// newPolicy returns a policy configured from cfg.FailureLimit and
// cfg.FailureWindow (zero values take the defaults).
func newPolicy(cfg Config) *policy {
	c := cfg.withDefaults()
	return &policy{limit: c.FailureLimit, window: c.FailureWindow, fails: make(map[BackendKey]*failureRing)}
}

// shouldAttempt decides for backend key at now. Checks run in this order and
// the first that fails gives the reason: client capability, service policy,
// backend capability, fd pressure, failed-attempt window (with RetryAfter).
func (p *policy) shouldAttempt(key BackendKey, in Inputs, now time.Time) Decision {
	switch {
	case !in.ClientCapable:
		return Decision{Reason: ReasonClientUnsupported}
	case !in.PolicyEnabled:
		return Decision{Reason: ReasonPolicyDisabled}
	case !in.BackendCapable:
		return Decision{Reason: ReasonBackendNotCapable}
	case in.FDPressure:
		return Decision{Reason: ReasonFDPressure}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.fails[key]
	if r == nil {
		return Decision{Attempt: true}
	}
	if !now.Before(r.newest().Add(p.window)) {
		// Every recorded failure has left the window: forget the backend.
		delete(p.fails, key)
		return Decision{Attempt: true}
	}
	if r.full {
		if until := r.times[r.next].Add(p.window); now.Before(until) {
			return Decision{Reason: ReasonRateLimited, RetryAfter: until.Sub(now)}
		}
	}
	return Decision{Attempt: true}
}

// recordFailure records a failed handoff to backend key at now.
func (p *policy) recordFailure(key BackendKey, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.fails[key]
	if r == nil {
		if len(p.fails) >= maxTrackedBackends {
			p.pruneLocked(now)
			if len(p.fails) >= maxTrackedBackends {
				return
			}
		}
		r = &failureRing{times: make([]time.Time, p.limit)}
		p.fails[key] = r
	}
	r.times[r.next] = now
	r.next++
	if r.next == len(r.times) {
		r.next = 0
		r.full = true
	}
}

// forget drops backend key's failed-attempt window: its process is gone.
func (p *policy) forget(key BackendKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.fails, key)
}

// recordSuccess clears backend key's failed-attempt window.
func (p *policy) recordSuccess(key BackendKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.fails, key)
}

// pruneLocked drops backends whose failures have all left the window.
func (p *policy) pruneLocked(now time.Time) {
	for k, r := range p.fails {
		if !now.Before(r.newest().Add(p.window)) {
			delete(p.fails, k)
		}
	}
}

package handoff

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// MinAckDeadline is the shortest ACK deadline an AckRegistry uses; shorter
// (including zero and negative) deadlines are raised to it, because a
// deadline that has passed before the offer is even sent would turn every
// handoff into a fallback.
const MinAckDeadline = time.Millisecond

// AckEntry describes one registered handoff awaiting its ACK. Its Token field
// formats as redacted, like every Token.
type AckEntry struct {
	// Token is the token the ACK must present.
	Token Token
	// Backend identifies the backend the connection was offered to.
	Backend BackendKey
	// Registered is when Register was called.
	Registered time.Time
	// Deadline is Registered plus the registry's ACK deadline. An ACK at or
	// after Deadline is late.
	Deadline time.Time
}

// AckRegistry tracks handoffs whose offer is (about to be) out and whose ACK
// has not arrived, each with a deadline. It shares a TokenStore: every way an
// entry leaves the registry (Acknowledge, Abandon, ExpireOverdue) revokes its
// token, so a token never outlives its entry. Entries are keyed by token,
// which must always be the trusted (issued) token; peers' tokens are checked
// with TokenStore.ConsumeMatching first. The zero value is not usable; call
// NewAckRegistry. An AckRegistry is safe for concurrent use.
type AckRegistry struct {
	store    *TokenStore
	deadline time.Duration

	mu      sync.Mutex
	entries map[Token]AckEntry
}

// NewAckRegistry returns an empty registry whose entries are due deadline
// after registration, revoking tokens in store. A deadline below
// MinAckDeadline, zero included, is clamped to MinAckDeadline; pass
// DefaultAckDeadline for the usual 5 s (Config.AckDeadline's zero value maps
// to that default before the Orchestrator gets here). store must not be nil.
func NewAckRegistry(store *TokenStore, deadline time.Duration) *AckRegistry {
	if store == nil {
		panic("handoff: NewAckRegistry called with a nil TokenStore")
	}
	return &AckRegistry{
		store:    store,
		deadline: max(deadline, MinAckDeadline),
		entries:  make(map[Token]AckEntry),
	}
}

// Deadline returns the registry's (clamped) ACK deadline.
func (r *AckRegistry) Deadline() time.Duration { return r.deadline }

// Register records that an ACK for t, from backend, is expected before
// now+Deadline(), and returns that deadline. t must be pending in the store
// (ErrNotPending otherwise) and not registered yet (ErrAlreadyRegistered).
func (r *AckRegistry) Register(t Token, backend BackendKey, now time.Time) (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.entries[t]; dup {
		return time.Time{}, ErrAlreadyRegistered
	}
	if !r.store.Pending(t, now) {
		return time.Time{}, ErrNotPending
	}
	due := now.Add(r.deadline)
	r.entries[t] = AckEntry{Token: t, Backend: backend, Registered: now, Deadline: due}
	return due, nil
}

// Acknowledge settles the entry for t with an ACK received at at. It
// succeeds only if the entry exists (ErrNotPending otherwise, e.g. after
// ExpireOverdue or Abandon) and at is before the deadline (ErrAckLate
// otherwise). Either way the entry is removed and the token revoked: an
// entry is settled exactly once. The entry is returned whenever it existed.
func (r *AckRegistry) Acknowledge(t Token, at time.Time) (AckEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[t]
	if !ok {
		return AckEntry{}, ErrNotPending
	}
	delete(r.entries, t)
	r.store.Revoke(t)
	if !at.Before(e.Deadline) {
		return e, ErrAckLate
	}
	return e, nil
}

// Abandon removes the entry for t, if any, and always revokes t, whether or
// not it was registered. It reports whether an entry existed.
func (r *AckRegistry) Abandon(t Token) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.entries[t]
	delete(r.entries, t)
	r.store.Revoke(t)
	return ok
}

// ExpireOverdue removes every entry whose deadline is at or before now,
// revokes its token, and returns the removed entries (nil when none), in no
// particular order. A later Acknowledge for any of them fails with
// ErrNotPending.
func (r *AckRegistry) ExpireOverdue(now time.Time) []AckEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []AckEntry
	for t, e := range r.entries {
		if !now.Before(e.Deadline) {
			delete(r.entries, t)
			r.store.Revoke(t)
			out = append(out, e)
		}
	}
	return out
}

// Len returns the number of registered entries, overdue ones included.
func (r *AckRegistry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.entries)
}

// Format prints a summary without any token (fmt would print the map keys
// raw).
func (r *AckRegistry) Format(f fmt.State, _ rune) {
	if r == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	_, _ = io.WriteString(f, "handoff.AckRegistry{entries="+strconv.Itoa(r.Len())+
		" deadline="+r.deadline.String()+"}")
}

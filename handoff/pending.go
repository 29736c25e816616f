package handoff

import (
	"fmt"
	"io"
	"time"
)

// pendingTable is the one record of the attempts whose token is pending,
// keyed by connection id (the ACK's correlation id). An attempt enters it at
// Begin, with a fresh token, its token's expiry and its ACK deadline, and
// leaves it exactly once: when its ACK is taken (the token consumed) or when
// it is abandoned, fails or times out (the token revoked). Leaving the table
// is what makes a token unusable, so there is no second record to forget.
//
// It bounds the live tokens (max), draws them from a cryptographic source
// and refuses duplicates. It has no lock of its own: Orchestrator.mu guards
// it, together with the attempts' states.
type pendingTable struct {
	byConn  map[uint64]*Attempt
	max     int
	ttl     time.Duration
	retries int
	rand    io.Reader // read only under Orchestrator.mu, so a test source need not be goroutine-safe
	buf     Token     // draw buffer: reading into a local would make it escape through the interface call
}

func newPendingTable(c Config) pendingTable {
	return pendingTable{
		byConn:  make(map[uint64]*Attempt, min(c.MaxInFlight, c.MaxPending, 256)),
		max:     c.MaxPending,
		ttl:     c.TokenTTL,
		retries: c.CollisionRetries,
		rand:    c.Rand,
	}
}

// full reports whether max live tokens exist at now. An attempt whose token
// has expired stays in the table until it ends (its ACK can then only fail),
// but it no longer counts against the cap.
func (p *pendingTable) full(now time.Time) bool {
	if len(p.byConn) < p.max {
		return false
	}
	live := 0
	for _, a := range p.byConn {
		if now.Before(a.tokenExpiry) {
			live++
		}
	}
	return live >= p.max
}

// draw returns a fresh token: not zero, and equal to no live token. It fails
// with errCollision when 1+retries draws all missed, and with an error
// wrapping errRandom when the random source fails.
func (p *pendingTable) draw(now time.Time) (Token, error) {
	for range p.retries + 1 {
		if _, err := io.ReadFull(p.rand, p.buf[:]); err != nil {
			p.buf = Token{}
			return Token{}, fmt.Errorf("%w: %w", errRandom, err)
		}
		t := p.buf
		if t.IsZero() || p.live(t, now) {
			continue
		}
		p.buf = Token{} // do not keep a copy of a live secret around
		return t, nil
	}
	p.buf = Token{}
	return Token{}, errCollision
}

// live reports whether t is the token of an attempt in the table that has
// not expired at now. It scans the table, which holds at most
// Config.MaxInFlight attempts. Both sides are the broker's own fresh
// secrets, never a peer's guess, so plain == (no timing to hide) is used.
func (p *pendingTable) live(t Token, now time.Time) bool {
	for _, a := range p.byConn {
		if a.token == t && now.Before(a.tokenExpiry) {
			return true
		}
	}
	return false
}

// add records a, unless an attempt with its connection id is there already.
func (p *pendingTable) add(a *Attempt) bool {
	if _, dup := p.byConn[a.connID]; dup {
		return false
	}
	p.byConn[a.connID] = a
	return true
}

// remove takes a out of the table, revoking (or, after a matching ACK,
// consuming) its token. Removing an attempt that already left is a no-op.
func (p *pendingTable) remove(a *Attempt) {
	if p.byConn[a.connID] == a {
		delete(p.byConn, a.connID)
	}
}

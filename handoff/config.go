package handoff

import (
	"crypto/rand"
	"io"
	"time"
)

// Defaults used for zero-valued Config fields.
const (
	defaultMaxPending       = 1024
	defaultTokenTTL         = 30 * time.Second
	defaultAckDeadline      = 5 * time.Second
	defaultMaxInFlight      = 64
	defaultFailureLimit     = 8
	defaultFailureWindow    = 30 * time.Second
	defaultCollisionRetries = 16
)

// minAckDeadline is the shortest ACK deadline: shorter (including negative)
// deadlines are raised to it, because a deadline that has passed before the
// offer is even sent would turn every handoff into a fallback.
const minAckDeadline = time.Millisecond

// Config configures an Orchestrator. The zero value is ready to use: every
// zero field takes the default named next to it.
type Config struct {
	// MaxPending caps the number of live (issued, unexpired, not yet
	// consumed or revoked) tokens (default 1024; values <= 0 take the
	// default). At the cap Begin falls back with ReasonFDPressure, since
	// every pending token stands for a held fd.
	MaxPending int

	// TokenTTL is how long an issued token stays valid (default 30 s;
	// values <= 0 take the default). Keep it longer than AckDeadline: a
	// token that expires first turns a timely ACK into a fallback.
	TokenTTL time.Duration

	// AckDeadline is how long after Begin the backend's ACK may arrive
	// (default 5 s when zero). Negative values and values below 1 ms are
	// raised to 1 ms.
	AckDeadline time.Duration

	// MaxInFlight bounds the handoffs in flight (from Begin until the
	// attempt's outcome is known) per orchestrator (default 64; values <= 0
	// take the default). Beyond it Begin falls back with ReasonFDPressure;
	// the client is never refused.
	MaxInFlight int

	// FailureLimit and FailureWindow define the per-backend failed-attempt
	// window: once FailureLimit failures fall within any FailureWindow,
	// attempts for that backend are suppressed until the oldest of them is
	// FailureWindow old (defaults 8 and 30 s; values <= 0 take the
	// defaults). A successful handoff clears the window.
	FailureLimit  int
	FailureWindow time.Duration

	// CollisionRetries is how many extra draws Begin makes when a draw
	// collides with a live token or is all zero (default 16 when zero; a
	// negative value means no retries, one draw only).
	CollisionRetries int

	// Rand is the token source (crypto/rand.Reader when nil). Tests inject a
	// rigged reader; it is only ever read under a lock, so it need not be
	// safe for concurrent use.
	Rand io.Reader

	// Now is the clock (time.Now when nil). It must agree with the runtime
	// timers, because a started attempt waits for its ACK deadline with
	// time.AfterFunc; under testing/synctest time.Now is the bubble's fake
	// clock.
	Now func() time.Time
}

// withDefaults returns c with every unset field filled in.
func (c Config) withDefaults() Config {
	if c.MaxPending <= 0 {
		c.MaxPending = defaultMaxPending
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = defaultTokenTTL
	}
	switch {
	case c.AckDeadline == 0:
		c.AckDeadline = defaultAckDeadline
	case c.AckDeadline < minAckDeadline:
		c.AckDeadline = minAckDeadline
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = defaultMaxInFlight
	}
	if c.FailureLimit <= 0 {
		c.FailureLimit = defaultFailureLimit
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = defaultFailureWindow
	}
	switch {
	case c.CollisionRetries == 0:
		c.CollisionRetries = defaultCollisionRetries
	case c.CollisionRetries < 0:
		c.CollisionRetries = 0
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

package handoff

import (
	"crypto/rand"
	"io"
	"time"
)

// Defaults used for zero-valued Config fields.
const (
	DefaultMaxPending       = 1024
	DefaultTokenTTL         = 30 * time.Second
	DefaultAckDeadline      = 5 * time.Second
	DefaultMaxInFlight      = 64
	DefaultFailureLimit     = 8
	DefaultFailureWindow    = 30 * time.Second
	DefaultCollisionRetries = 16
)

// Config configures the orchestrator and its components. The zero value is
// ready to use: every zero field takes the default named next to it. Each
// standalone constructor reads only the fields it needs.
type Config struct {
	// MaxPending caps the number of live tokens (DefaultMaxPending; values
	// <= 0 take the default). A full store makes Begin fall back with
	// ReasonFDPressure, since every pending token stands for a held fd.
	MaxPending int

	// TokenTTL is how long an issued token stays valid (DefaultTokenTTL;
	// values <= 0 take the default). Keep it longer than AckDeadline: a token
	// that expires first turns a timely ACK into a fallback.
	TokenTTL time.Duration

	// AckDeadline is how long after Begin the backend's ACK may arrive
	// (DefaultAckDeadline when zero). Negative values and values below
	// MinAckDeadline are clamped to MinAckDeadline.
	AckDeadline time.Duration

	// MaxInFlight bounds the handoffs in flight (from Begin to the end of
	// Run or Cancel) per orchestrator (DefaultMaxInFlight; values <= 0 take
	// the default). Beyond it Begin falls back with ReasonFDPressure; the
	// client is never refused.
	MaxInFlight int

	// FailureLimit and FailureWindow define the per-backend failed-attempt
	// window: once FailureLimit failures fall within any FailureWindow,
	// attempts for that backend are suppressed until the oldest of them is
	// FailureWindow old (DefaultFailureLimit, DefaultFailureWindow; values
	// <= 0 take the defaults). A successful handoff clears the window.
	FailureLimit  int
	FailureWindow time.Duration

	// CollisionRetries is how many extra draws Issue makes when a draw
	// collides with a live token or is all zero (DefaultCollisionRetries
	// when zero; a negative value means no retries, one draw only).
	CollisionRetries int

	// Rand is the token source (crypto/rand.Reader when nil). Tests inject a
	// rigged reader; it is only ever read under a lock, so it need not be
	// safe for concurrent use.
	Rand io.Reader

	// Now is the clock (time.Now when nil). It must agree with the runtime
	// timers, because Run waits for the ACK deadline with time.NewTimer;
	// under testing/synctest time.Now is the bubble's fake clock.
	Now func() time.Time
}

// withDefaults returns c with every unset field filled in.
func (c Config) withDefaults() Config {
	if c.MaxPending <= 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	switch {
	case c.AckDeadline == 0:
		c.AckDeadline = DefaultAckDeadline
	case c.AckDeadline < MinAckDeadline:
		c.AckDeadline = MinAckDeadline
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.FailureLimit <= 0 {
		c.FailureLimit = DefaultFailureLimit
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = DefaultFailureWindow
	}
	switch {
	case c.CollisionRetries == 0:
		c.CollisionRetries = DefaultCollisionRetries
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

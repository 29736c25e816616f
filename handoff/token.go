package handoff

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/portier/portier/wire"
)

// redactedToken is the only text form a Token ever has.
const redactedToken = "token(redacted)"

// Token is a one-time handoff secret: 128 bits from a cryptographic random
// source (its length is the protocol's, wire.TokenLen). The broker sends it to the client in Negotiated and to the backend in
// HandoffOffer; the backend proves it adopted the right connection by echoing
// it in HandoffAck.
//
// A Token never reveals its bytes through fmt (every verb that fmt hands to a
// Formatter prints "token(redacted)"), log/slog (LogValue) or encoding/json and
// encoding/text (MarshalText). The one fmt verb that bypasses Formatter is %p,
// which fmt reports as a bad verb for an array and prints raw; go vet flags
// that misuse. Code that needs the bytes, such as the wire encoder, slices the
// array explicitly: tok[:].
//
// Compare tokens with Equal, which runs in constant time, never with ==.
type Token [wire.TokenLen]byte

// NewToken draws a token from r, or from crypto/rand when r is nil. It fails
// only if r does (crypto/rand does not); the error wraps ErrRandom.
func NewToken(r io.Reader) (Token, error) {
	if r == nil {
		r = rand.Reader
	}
	var t Token
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrRandom, err)
	}
	return t, nil
}

// TokenFromBytes converts a token received from the wire. It requires exactly
// wire.TokenLen bytes and copies them; the error wraps ErrTokenLength.
func TokenFromBytes(b []byte) (Token, error) {
	var t Token
	if len(b) != len(t) {
		return t, fmt.Errorf("%w: got %d", ErrTokenLength, len(b))
	}
	copy(t[:], b)
	return t, nil
}

// Equal reports whether t and o are the same token. It takes the same time
// whatever the contents, so a peer cannot learn a token byte by byte from
// response timing.
func (t Token) Equal(o Token) bool {
	return subtle.ConstantTimeCompare(t[:], o[:]) == 1
}

// IsZero reports, in constant time, whether t is the zero token. The zero
// token is what an unset protobuf field decodes to; a TokenStore never issues
// it.
func (t Token) IsZero() bool {
	var zero Token
	return subtle.ConstantTimeCompare(t[:], zero[:]) == 1
}

// String returns "token(redacted)".
func (t Token) String() string { return redactedToken }

// GoString returns "token(redacted)", for %#v.
func (t Token) GoString() string { return redactedToken }

// Format prints "token(redacted)" for every verb, width and flag, so %x, %d,
// %v and friends cannot reveal the bytes.
func (t Token) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redactedToken) }

// LogValue makes log/slog print "token(redacted)".
func (t Token) LogValue() slog.Value { return slog.StringValue(redactedToken) }

// MarshalText returns "token(redacted)", so encoding/json and other text
// encoders (including structured loggers that fall back to them) never
// serialise the secret. There is deliberately no UnmarshalText: tokens are
// short-lived and travel only in protobuf fields.
func (t Token) MarshalText() ([]byte, error) { return []byte(redactedToken), nil }

// TokenStore holds the tokens that have been issued and not yet consumed,
// revoked or expired. It bounds their number (Config.MaxPending) and their
// lifetime (Config.TokenTTL), draws them from Config.Rand, and consumes each
// at most once. Expired tokens are dropped lazily: by ConsumeMatching when it
// meets one, by Issue when the store is full, and by Prune. The zero value is
// not usable; call NewTokenStore. A TokenStore is safe for concurrent use.
type TokenStore struct {
	mu      sync.Mutex
	pending map[Token]time.Time // token -> expiry (exclusive)
	max     int
	ttl     time.Duration
	retries int
	rand    io.Reader // read only under mu, so a test source need not be goroutine-safe
	buf     Token     // draw buffer: reading into a local would make it escape through the interface call
}

// NewTokenStore returns an empty store configured from cfg.MaxPending,
// cfg.TokenTTL, cfg.CollisionRetries and cfg.Rand (zero values take the
// defaults documented on Config). Other fields are ignored.
func NewTokenStore(cfg Config) *TokenStore {
	c := cfg.withDefaults()
	return &TokenStore{
		pending: make(map[Token]time.Time, min(c.MaxPending, 256)),
		max:     c.MaxPending,
		ttl:     c.TokenTTL,
		retries: c.CollisionRetries,
		rand:    c.Rand,
	}
}

// Issue draws a fresh token that expires at now+TTL and records it as
// pending. It fails with ErrPendingFull when MaxPending live tokens exist
// (expired ones are pruned first), with ErrCollision when 1+CollisionRetries
// draws all produced the zero token or a live token, and with an error
// wrapping ErrRandom when the random source fails.
func (s *TokenStore) Issue(now time.Time) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= s.max {
		s.pruneLocked(now)
		if len(s.pending) >= s.max {
			return Token{}, ErrPendingFull
		}
	}
	for range s.retries + 1 {
		if _, err := io.ReadFull(s.rand, s.buf[:]); err != nil {
			return Token{}, fmt.Errorf("%w: %w", ErrRandom, err)
		}
		t := s.buf
		if t.IsZero() {
			continue
		}
		if exp, live := s.pending[t]; live && now.Before(exp) {
			continue
		}
		s.pending[t] = now.Add(s.ttl)
		s.buf = Token{} // do not keep a copy of a live secret around
		return t, nil
	}
	s.buf = Token{}
	return Token{}, ErrCollision
}

// ConsumeMatching consumes the pending token expected if presented equals it
// (compared in constant time) and it has not expired at now. Exactly one call
// can succeed for a given token. It returns
//   - ErrNotPending if expected is unknown, consumed or revoked;
//   - ErrTokenExpired (which also matches ErrNotPending) if its TTL has
//     passed; the token is removed;
//   - ErrTokenMismatch if presented differs; nothing is consumed and expected
//     stays pending, so a wrong guess cannot burn the real token.
//
// expected must be the trusted value (the one the broker issued), never a
// peer-supplied one: it is the map key.
func (s *TokenStore) ConsumeMatching(expected, presented Token, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.pending[expected]
	if !ok {
		return ErrNotPending
	}
	if !now.Before(exp) {
		delete(s.pending, expected)
		return ErrTokenExpired
	}
	if !expected.Equal(presented) {
		return ErrTokenMismatch
	}
	delete(s.pending, expected)
	return nil
}

// Revoke removes t if it is pending and reports whether it was. Revoking an
// unknown or already consumed token is a harmless no-op.
func (s *TokenStore) Revoke(t Token) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pending[t]
	delete(s.pending, t)
	return ok
}

// Prune removes every token expired at now and returns how many it removed.
func (s *TokenStore) Prune(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pruneLocked(now)
}

func (s *TokenStore) pruneLocked(now time.Time) int {
	n := 0
	for t, exp := range s.pending {
		if !now.Before(exp) {
			delete(s.pending, t)
			n++
		}
	}
	return n
}

// Pending reports whether t is pending and unexpired at now. Like
// ConsumeMatching, it must be given a trusted token.
func (s *TokenStore) Pending(t Token, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.pending[t]
	return ok && now.Before(exp)
}

// Len returns the number of tokens held, including expired ones not yet
// pruned.
func (s *TokenStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Format prints a summary without any token, so %v or %+v of a store (whose
// map keys fmt would otherwise print raw) cannot leak secrets.
func (s *TokenStore) Format(f fmt.State, _ rune) {
	if s == nil {
		_, _ = io.WriteString(f, "<nil>")
		return
	}
	_, _ = io.WriteString(f, "handoff.TokenStore{pending="+strconv.Itoa(s.Len())+"}")
}

package handoff

import (
	"crypto/subtle"
	"fmt"
	"io"
	"log/slog"

	"github.com/portier/portier/wire"
)

// redactedToken is the only text form a Token ever has.
const redactedToken = "token(redacted)"

// Token is a one-time handoff secret: 128 bits from a cryptographic random
// source (its length is the protocol's, wire.TokenLen). The broker sends it
// to the client in Negotiated and to the backend in HandoffOffer; the backend
// proves it adopted the right connection by echoing it in HandoffAck.
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
// token is what an unset protobuf field decodes to; the orchestrator never
// issues it.
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

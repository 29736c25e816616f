package handoff

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// secretToken has recognisable bytes so leaks are easy to spot.
var secretToken = Token{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0xb0}

// assertNoLeak fails if s contains t's bytes in any common rendering.
func assertNoLeak(t *testing.T, what, s string, tok Token) {
	t.Helper()
	forms := []string{
		hex.EncodeToString(tok[:]),
		strings.ToUpper(hex.EncodeToString(tok[:])),
		fmt.Sprint([]byte(tok[:])),
		fmt.Sprintf("%#v", []byte(tok[:])),
		hex.EncodeToString(tok[:4]),
		strings.Trim(fmt.Sprint([]byte(tok[:4])), "[]"),
		string(tok[:]),
	}
	for _, f := range forms {
		if strings.Contains(s, f) {
			t.Errorf("%s leaks the token (%q) in %q", what, f, s)
		}
	}
}

func TestTokenRedactedEverywhere(t *testing.T) {
	tok := secretToken
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "% x", "%#x", "%d", "%o", "%b",
		"%c", "%U", "%e", "%t", "%20v", "%-8x", "%08d", "%z"}
	for _, v := range verbs {
		got := fmt.Sprintf(v, tok)
		assertNoLeak(t, v, got, tok)
		if !strings.Contains(got, "redacted") {
			t.Errorf("Sprintf(%q) = %q, want redacted", v, got)
		}
	}
	for _, got := range []string{fmt.Sprint(tok), fmt.Sprintln(tok), tok.String(), tok.GoString(), fmt.Sprint(&tok)} {
		assertNoLeak(t, "Sprint", got, tok)
	}
	if got := tok.String(); got != "token(redacted)" {
		t.Errorf("String() = %q", got)
	}

	// Structs and pointers that carry a token in an exported field.
	type carrier struct {
		Name string
		Tok  Token
		Ptr  *Token
	}
	c := carrier{"x", tok, &tok}
	for _, v := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoLeak(t, "struct "+v, fmt.Sprintf(v, c), tok)
		assertNoLeak(t, "struct ptr "+v, fmt.Sprintf(v, &c), tok)
		assertNoLeak(t, "offer "+v, fmt.Sprintf(v, Offer{ConnectionID: 1, Service: "s", Token: tok}), tok)
		assertNoLeak(t, "entry "+v, fmt.Sprintf(v, AckEntry{Token: tok}), tok)
		assertNoLeak(t, "slice "+v, fmt.Sprintf(v, []Token{tok}), tok)
		assertNoLeak(t, "map "+v, fmt.Sprintf(v, map[Token]int{tok: 1}), tok)
	}

	// slog, text and JSON, top level and nested.
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("m", "token", tok, "carrier", c, slog.Any("ptr", &tok), slog.Group("g", "t", tok))
	}
	assertNoLeak(t, "slog", buf.String(), tok)
	if !strings.Contains(buf.String(), "token(redacted)") {
		t.Errorf("slog output lacks the redaction marker: %s", buf.String())
	}

	// encoding/json, directly and nested.
	for _, v := range []any{tok, c, map[string]Token{"k": tok}, map[Token]int{tok: 1}} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		assertNoLeak(t, "json", string(b), tok)
	}
}

func TestTokenFromBytes(t *testing.T) {
	b := secretToken[:]
	got, err := TokenFromBytes(b)
	if err != nil || !got.Equal(secretToken) {
		t.Fatalf("TokenFromBytes = %v, %v", got == secretToken, err)
	}
	b2 := bytes.Clone(b)
	got, _ = TokenFromBytes(b2)
	b2[0] = 0
	if !got.Equal(secretToken) {
		t.Error("TokenFromBytes aliases its input")
	}
	for _, n := range []int{0, 1, 15, 17, 32} {
		_, err := TokenFromBytes(make([]byte, n))
		if !errors.Is(err, ErrTokenLength) {
			t.Errorf("len %d: err = %v, want ErrTokenLength", n, err)
		}
	}
	if _, err := TokenFromBytes(nil); !errors.Is(err, ErrTokenLength) {
		t.Errorf("nil: err = %v", err)
	}
}

func TestTokenEqualAndZero(t *testing.T) {
	a := secretToken
	b := secretToken
	if !a.Equal(b) {
		t.Error("equal tokens compare unequal")
	}
	for i := range len(Token{}) {
		c := a
		c[i] ^= 1
		if a.Equal(c) || c.Equal(a) {
			t.Errorf("tokens differing in byte %d compare equal", i)
		}
	}
	if a.IsZero() || !(Token{}).IsZero() {
		t.Error("IsZero wrong")
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestNewToken(t *testing.T) {
	a, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) || a.IsZero() {
		t.Error("crypto/rand tokens repeat or are zero")
	}
	boom := errors.New("boom")
	if _, err := NewToken(errReader{boom}); !errors.Is(err, ErrRandom) || !errors.Is(err, boom) {
		t.Errorf("err = %v, want ErrRandom wrapping boom", err)
	}
	if _, err := NewToken(bytes.NewReader(make([]byte, 8))); !errors.Is(err, ErrRandom) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short source: err = %v", err)
	}
}

// seqReader yields the given tokens in turn, then repeats the last one
// forever, counting draws.
type seqReader struct {
	toks  []Token
	draws int
	buf   []byte
}

func (r *seqReader) Read(p []byte) (int, error) {
	if len(r.buf) == 0 {
		i := min(r.draws, len(r.toks)-1)
		r.buf = bytes.Clone(r.toks[i][:])
		r.draws++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func tokN(n byte) Token { return Token{0: n, 15: n} }

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestStoreCapacity(t *testing.T) {
	s := NewTokenStore(Config{MaxPending: 3, TokenTTL: time.Minute})
	var toks []Token
	for range 3 {
		tok, err := s.Issue(t0)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	if _, err := s.Issue(t0); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("4th Issue: %v, want ErrPendingFull", err)
	}
	if !s.Revoke(toks[0]) || s.Revoke(toks[0]) {
		t.Fatal("Revoke reports wrongly")
	}
	if _, err := s.Issue(t0); err != nil {
		t.Fatalf("Issue after Revoke: %v", err)
	}
	if _, err := s.Issue(t0.Add(time.Minute - 1)); !errors.Is(err, ErrPendingFull) {
		t.Fatalf("Issue before TTL: %v", err)
	}
	// At TTL every token is expired; a full store prunes before refusing.
	if _, err := s.Issue(t0.Add(time.Minute)); err != nil {
		t.Fatalf("Issue after TTL: %v", err)
	}
	if s.Len() != 1 {
		t.Errorf("Len = %d, want 1 after lazy prune", s.Len())
	}
	if got := NewTokenStore(Config{}).max; got != DefaultMaxPending {
		t.Errorf("default MaxPending = %d", got)
	}
}

func TestStoreTTL(t *testing.T) {
	s := NewTokenStore(Config{TokenTTL: 30 * time.Second})
	a, _ := s.Issue(t0)
	b, _ := s.Issue(t0)
	if !s.Pending(a, t0.Add(30*time.Second-1)) || s.Pending(a, t0.Add(30*time.Second)) {
		t.Error("Pending disagrees with TTL")
	}
	if err := s.ConsumeMatching(a, a, t0.Add(30*time.Second-1)); err != nil {
		t.Fatalf("consume just before TTL: %v", err)
	}
	err := s.ConsumeMatching(b, b, t0.Add(30*time.Second))
	if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrNotPending) {
		t.Fatalf("consume at TTL: %v, want ErrTokenExpired (and ErrNotPending)", err)
	}
	if s.Len() != 0 {
		t.Error("expired token not removed")
	}
	err = s.ConsumeMatching(b, b, t0.Add(30*time.Second))
	if !errors.Is(err, ErrNotPending) || errors.Is(err, ErrTokenExpired) {
		t.Fatalf("second consume: %v, want plain ErrNotPending", err)
	}
	if errors.Is(ErrNotPending, ErrTokenExpired) {
		t.Error("ErrNotPending must not match ErrTokenExpired")
	}

	c, _ := s.Issue(t0)
	d, _ := s.Issue(t0.Add(10 * time.Second))
	if n := s.Prune(t0.Add(35 * time.Second)); n != 1 {
		t.Errorf("Prune = %d, want 1", n)
	}
	if s.Pending(c, t0) || !s.Pending(d, t0.Add(35*time.Second)) {
		t.Error("Prune removed the wrong token")
	}
	if got := NewTokenStore(Config{}).ttl; got != DefaultTokenTTL {
		t.Errorf("default TTL = %v", got)
	}
}

func TestStoreReplayAndMismatch(t *testing.T) {
	s := NewTokenStore(Config{})
	tok, err := s.Issue(t0)
	if err != nil {
		t.Fatal(err)
	}
	wrong := tok
	wrong[7] ^= 0x80
	if err := s.ConsumeMatching(tok, wrong, t0); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("mismatch: %v", err)
	}
	if err := s.ConsumeMatching(tok, Token{}, t0); !errors.Is(err, ErrTokenMismatch) {
		t.Fatalf("zero presented: %v", err)
	}
	if !s.Pending(tok, t0) {
		t.Fatal("mismatch consumed the token")
	}
	if err := s.ConsumeMatching(tok, tok, t0); err != nil {
		t.Fatalf("consume after mismatch: %v", err)
	}
	if err := s.ConsumeMatching(tok, tok, t0); !errors.Is(err, ErrNotPending) {
		t.Fatalf("replay: %v, want ErrNotPending", err)
	}
	if err := s.ConsumeMatching(Token{}, Token{}, t0); !errors.Is(err, ErrNotPending) {
		t.Fatalf("zero token: %v, want ErrNotPending", err)
	}
}

func TestStoreCollisions(t *testing.T) {
	t.Run("exhausted with defaults", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1)}}
		s := NewTokenStore(Config{Rand: r})
		if tok, err := s.Issue(t0); err != nil || !tok.Equal(tokN(1)) {
			t.Fatalf("first Issue: %v", err)
		}
		r.draws = 0
		if _, err := s.Issue(t0); !errors.Is(err, ErrCollision) {
			t.Fatalf("second Issue: %v, want ErrCollision", err)
		}
		if r.draws != 1+DefaultCollisionRetries {
			t.Errorf("draws = %d, want %d", r.draws, 1+DefaultCollisionRetries)
		}
	})
	t.Run("succeeds on last retry", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1), tokN(1), tokN(1), tokN(1), tokN(2)}}
		s := NewTokenStore(Config{Rand: r, CollisionRetries: 3})
		s.Issue(t0)
		tok, err := s.Issue(t0) // draws 1,1,1,2: three collisions then success
		if err != nil || !tok.Equal(tokN(2)) {
			t.Fatalf("Issue: %v", err)
		}
	})
	t.Run("fails one retry short", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1), tokN(1), tokN(1), tokN(1), tokN(1), tokN(2)}}
		s := NewTokenStore(Config{Rand: r, CollisionRetries: 3})
		s.Issue(t0)
		if _, err := s.Issue(t0); !errors.Is(err, ErrCollision) {
			t.Fatalf("Issue: %v, want ErrCollision", err)
		}
		if s.Len() != 1 {
			t.Errorf("Len = %d", s.Len())
		}
	})
	t.Run("negative means no retries", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1)}}
		s := NewTokenStore(Config{Rand: r, CollisionRetries: -1})
		s.Issue(t0)
		r.draws = 0
		if _, err := s.Issue(t0); !errors.Is(err, ErrCollision) || r.draws != 1 {
			t.Fatalf("err %v draws %d", err, r.draws)
		}
	})
	t.Run("zero token never issued", func(t *testing.T) {
		r := &seqReader{toks: []Token{{}, {}, tokN(3)}}
		s := NewTokenStore(Config{Rand: r})
		tok, err := s.Issue(t0)
		if err != nil || !tok.Equal(tokN(3)) {
			t.Fatalf("Issue: %v %v", tok.IsZero(), err)
		}
		s2 := NewTokenStore(Config{Rand: &seqReader{toks: []Token{{}}}})
		if _, err := s2.Issue(t0); !errors.Is(err, ErrCollision) {
			t.Fatalf("all-zero source: %v", err)
		}
	})
	t.Run("expired token may be reissued", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(4)}}
		s := NewTokenStore(Config{Rand: r, TokenTTL: time.Second})
		s.Issue(t0)
		if _, err := s.Issue(t0.Add(time.Second)); err != nil {
			t.Fatalf("reissue after expiry: %v", err)
		}
		if !s.Pending(tokN(4), t0.Add(time.Second)) {
			t.Error("reissued token not pending with its new expiry")
		}
	})
	t.Run("random source error", func(t *testing.T) {
		boom := errors.New("entropy gone")
		s := NewTokenStore(Config{Rand: errReader{boom}})
		if _, err := s.Issue(t0); !errors.Is(err, ErrRandom) || !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestStoreFormatNoLeak(t *testing.T) {
	s := NewTokenStore(Config{Rand: &seqReader{toks: []Token{secretToken}}})
	if _, err := s.Issue(t0); err != nil {
		t.Fatal(err)
	}
	r := NewAckRegistry(s, time.Second)
	if _, err := r.Register(secretToken, BackendKey{"svc", "1"}, t0); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		for _, x := range []any{s, r} {
			got := fmt.Sprintf(v, x)
			assertNoLeak(t, fmt.Sprintf("%T %s", x, v), got, secretToken)
			if !strings.HasPrefix(got, "handoff.") {
				t.Errorf("%T %s = %q", x, v, got)
			}
		}
	}
	var ns *TokenStore
	var nr *AckRegistry
	if fmt.Sprint(ns) != "<nil>" || fmt.Sprint(nr) != "<nil>" {
		t.Error("nil Format")
	}
}

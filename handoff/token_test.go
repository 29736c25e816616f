package handoff

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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

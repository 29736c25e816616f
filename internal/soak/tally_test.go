package soak

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/portier/portier/client"
)

func TestClassify(t *testing.T) {
	const bound = 10 * time.Second
	for _, tc := range []struct {
		name     string
		err      error
		elapsed  time.Duration
		wantKind kind
		wantKey  string
	}{
		{"own deadline", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), bound, kindHung, ""},
		{"timeout before the bound", fmt.Errorf("read: %w", os.ErrDeadlineExceeded), time.Second, kindError, KeyOther},
		{"broker unavailable", fmt.Errorf("%w: no socket", client.ErrBrokerUnavailable), 0, kindError, keyBrokerUnavailable},
		{"backend unavailable", fmt.Errorf("%w: refused", client.ErrBackendUnavailable), 0, kindError, KeyBackendUnavailable},
		{"protocol error, EOF", &client.ProtocolError{Op: "read hello reply", Err: io.EOF}, 0, kindError, "ProtocolError: read hello reply (EOF)"},
		{"protocol error, client timeout", &client.ProtocolError{Op: "read hello reply", Err: os.ErrDeadlineExceeded}, 5 * time.Second, kindError, "ProtocolError: read hello reply (timeout)"},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), 0, kindError, keyCut},
		{"EOF mid-reply", io.ErrUnexpectedEOF, 0, kindError, keyCut},
		{"anything else", errors.New("boom"), 0, kindError, KeyOther},
	} {
		k, key := classify(tc.err, tc.elapsed, bound)
		if k != tc.wantKind || key != tc.wantKey {
			t.Errorf("%s: classify = %d %q, want %d %q", tc.name, k, key, tc.wantKind, tc.wantKey)
		}
	}
}

// TestJudgeBrokerUnavailable: ErrBrokerUnavailable counts as legitimate
// only when the attempt overlaps a window without a broker.
func TestJudgeBrokerUnavailable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var tl timeline
	tl.brokerDown(at(100))
	tl.brokerUp(at(300))
	tl.brokerDown(at(1000)) // still down
	for _, tc := range []struct {
		start, end int
		want       string
	}{
		{0, 50, KeyBrokerListening},
		{50, 100, KeyBrokerDown},
		{200, 210, KeyBrokerDown},
		{300, 400, KeyBrokerDown},
		{301, 400, KeyBrokerListening},
		{900, 999, KeyBrokerListening},
		{2000, 2001, KeyBrokerDown},
	} {
		o := outcome{kind: kindError, key: keyBrokerUnavailable, start: at(tc.start), end: at(tc.end)}
		tl.judge(&o, true)
		if o.key != tc.want {
			t.Errorf("attempt %d-%d ms: %q, want %q", tc.start, tc.end, o.key, tc.want)
		}
	}
	if got, want := tl.downTotal(at(1500)), 700*time.Millisecond; got != want {
		t.Errorf("downTotal = %s, want %s", got, want)
	}
}

// TestJudgeCut: a cut is the kill's when a kill fell in the attempt or
// just before it began.
func TestJudgeCut(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var tl timeline
	tl.kill(at(1000))
	for _, tc := range []struct {
		start, end int
		killsApply bool
		want       string
	}{
		{900, 1100, true, KeyCutKilled},
		{1000 + int(killGrace/time.Millisecond), 1400, true, KeyCutKilled},
		{1001 + int(killGrace/time.Millisecond), 1400, true, KeyCutUnexplained},
		{500, 999, true, KeyCutUnexplained},
		{900, 1100, false, KeyCutUnexplained},
	} {
		o := outcome{kind: kindError, key: keyCut, start: at(tc.start), end: at(tc.end)}
		tl.judge(&o, tc.killsApply)
		if o.key != tc.want {
			t.Errorf("attempt %d-%d ms (kills apply %v): %q, want %q", tc.start, tc.end, tc.killsApply, o.key, tc.want)
		}
	}
}

func TestTally(t *testing.T) {
	var tl tally
	tl.add(outcome{kind: kindCorrect, route: client.Handoff})
	tl.add(outcome{kind: kindCorrect, route: client.Direct})
	tl.add(outcome{kind: kindCorrupt, detail: "x"})
	for i := range maxSamples + 2 {
		tl.add(outcome{kind: kindError, key: KeyBackendUnavailable, detail: fmt.Sprint(i)})
	}
	tl.addStuck(1, "stuck")
	c := tl.counts()
	if c.Attempted != 4+maxSamples+2 || c.Correct != 2 || c.Corrupt != 1 || c.Hung != 1 || c.Errors[KeyBackendUnavailable] != maxSamples+2 {
		t.Errorf("counts %+v", c)
	}
	if c.Routes["handoff"] != 1 || c.Routes["direct"] != 1 {
		t.Errorf("routes %v", c.Routes)
	}
	if len(c.Samples[KeyBackendUnavailable]) != maxSamples {
		t.Errorf("samples %v, want %d kept", c.Samples, maxSamples)
	}
}

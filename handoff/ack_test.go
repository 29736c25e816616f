package handoff

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

var keyA = BackendKey{Service: "echo", Version: "1.2.0"}

func newRegistry(t *testing.T, d time.Duration) (*TokenStore, *AckRegistry) {
	t.Helper()
	s := NewTokenStore(Config{})
	return s, NewAckRegistry(s, d)
}

func issue(t *testing.T, s *TokenStore, now time.Time) Token {
	t.Helper()
	tok, err := s.Issue(now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAckRegistryAcknowledge(t *testing.T) {
	s, r := newRegistry(t, 5*time.Second)
	tok := issue(t, s, t0)
	due, err := r.Register(tok, keyA, t0)
	if err != nil || !due.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("Register = %v, %v", due, err)
	}
	if _, err := r.Register(tok, keyA, t0); !errors.Is(err, ErrAlreadyRegistered) {
		t.Fatalf("duplicate Register: %v", err)
	}
	e, err := r.Acknowledge(tok, t0.Add(5*time.Second-1))
	if err != nil || e.Backend != keyA || !e.Token.Equal(tok) || !e.Registered.Equal(t0) || !e.Deadline.Equal(due) {
		t.Fatalf("Acknowledge = %+v, %v", e, err)
	}
	if r.Len() != 0 || s.Len() != 0 {
		t.Errorf("entry or token left: %d %d", r.Len(), s.Len())
	}
	if _, err := r.Acknowledge(tok, t0); !errors.Is(err, ErrNotPending) {
		t.Fatalf("second Acknowledge: %v", err)
	}
}

func TestAckRegistryRegisterRequiresPendingToken(t *testing.T) {
	s, r := newRegistry(t, time.Second)
	if _, err := r.Register(tokN(9), keyA, t0); !errors.Is(err, ErrNotPending) {
		t.Fatalf("unknown token: %v", err)
	}
	tok := issue(t, s, t0)
	if _, err := r.Register(tok, keyA, t0.Add(DefaultTokenTTL)); !errors.Is(err, ErrNotPending) {
		t.Fatalf("expired token: %v", err)
	}
}

func TestAckRegistryLateAckRejected(t *testing.T) {
	s, r := newRegistry(t, 5*time.Second)
	tok := issue(t, s, t0)
	r.Register(tok, keyA, t0)
	e, err := r.Acknowledge(tok, t0.Add(5*time.Second))
	if !errors.Is(err, ErrAckLate) || e.Backend != keyA {
		t.Fatalf("late Acknowledge = %+v, %v; want ErrAckLate with the entry", e, err)
	}
	if s.Pending(tok, t0) || r.Len() != 0 {
		t.Error("late ACK did not revoke the token and remove the entry")
	}
}

func TestAckRegistryAcknowledgeAfterExpireOverdue(t *testing.T) {
	s, r := newRegistry(t, 5*time.Second)
	early := issue(t, s, t0)
	late := issue(t, s, t0.Add(time.Second))
	r.Register(early, keyA, t0)
	r.Register(late, BackendKey{"b", "2"}, t0.Add(time.Second))
	if got := r.ExpireOverdue(t0.Add(5*time.Second - 1)); got != nil {
		t.Fatalf("nothing due yet, got %d", len(got))
	}
	got := r.ExpireOverdue(t0.Add(5 * time.Second))
	if len(got) != 1 || !got[0].Token.Equal(early) || got[0].Backend != keyA {
		t.Fatalf("ExpireOverdue = %+v", got)
	}
	if s.Pending(early, t0) {
		t.Error("expired entry's token still pending")
	}
	if _, err := r.Acknowledge(early, t0.Add(time.Second)); !errors.Is(err, ErrNotPending) {
		t.Fatalf("Acknowledge after ExpireOverdue: %v, want ErrNotPending", err)
	}
	if _, err := r.Acknowledge(late, t0.Add(2*time.Second)); err != nil {
		t.Fatalf("other entry: %v", err)
	}
}

func TestAckRegistryAbandonAlwaysRevokes(t *testing.T) {
	s, r := newRegistry(t, time.Second)
	tok := issue(t, s, t0)
	if r.Abandon(tok) {
		t.Error("Abandon of an unregistered token reported an entry")
	}
	if s.Pending(tok, t0) {
		t.Error("Abandon did not revoke an unregistered token")
	}
	tok = issue(t, s, t0)
	r.Register(tok, keyA, t0)
	if !r.Abandon(tok) || s.Pending(tok, t0) || r.Len() != 0 {
		t.Error("Abandon of a registered token")
	}
	if _, err := r.Acknowledge(tok, t0); !errors.Is(err, ErrNotPending) {
		t.Errorf("Acknowledge after Abandon: %v", err)
	}
}

func TestAckDeadlineClamp(t *testing.T) {
	s := NewTokenStore(Config{})
	for _, c := range []struct{ in, want time.Duration }{
		{0, MinAckDeadline}, {-time.Second, MinAckDeadline}, {time.Microsecond, MinAckDeadline},
		{time.Millisecond, time.Millisecond}, {5 * time.Second, 5 * time.Second},
	} {
		if got := NewAckRegistry(s, c.in).Deadline(); got != c.want {
			t.Errorf("NewAckRegistry(%v).Deadline() = %v, want %v", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want time.Duration }{
		{0, DefaultAckDeadline}, {-1, MinAckDeadline}, {time.Microsecond, MinAckDeadline}, {time.Minute, time.Minute},
	} {
		if got := NewOrchestrator(Config{AckDeadline: c.in}).acks.Deadline(); got != c.want {
			t.Errorf("Config.AckDeadline %v -> %v, want %v", c.in, got, c.want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("NewAckRegistry(nil) did not panic")
		}
	}()
	NewAckRegistry(nil, time.Second)
}

// TestAckRegistryDeadlineSynctest drives the deadline with the bubble's clock:
// an ACK one tick before the deadline succeeds, one at the deadline is late,
// and ExpireOverdue at the deadline collects the unacknowledged entry.
func TestAckRegistryDeadlineSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewTokenStore(Config{})
		r := NewAckRegistry(s, DefaultAckDeadline)
		start := time.Now()
		onTime, early, never := issue(t, s, start), issue(t, s, start), issue(t, s, start)
		for _, tok := range []Token{onTime, early, never} {
			r.Register(tok, keyA, start)
		}
		onTimeErr := make(chan error, 1)
		time.AfterFunc(DefaultAckDeadline-time.Nanosecond, func() {
			_, err := r.Acknowledge(onTime, time.Now())
			onTimeErr <- err
		})
		var errLate error
		var expired []AckEntry
		done := make(chan struct{})
		time.AfterFunc(DefaultAckDeadline, func() {
			_, errLate = r.Acknowledge(early, time.Now())
			expired = r.ExpireOverdue(time.Now())
			close(done)
		})
		errOnTime := <-onTimeErr
		<-done // the bubble's clock jumps straight to each timer
		if got := time.Since(start); got != DefaultAckDeadline {
			t.Errorf("fake clock advanced %v", got)
		}
		if errOnTime != nil {
			t.Errorf("ACK just before the deadline: %v", errOnTime)
		}
		if !errors.Is(errLate, ErrAckLate) {
			t.Errorf("ACK at the deadline: %v, want ErrAckLate", errLate)
		}
		if len(expired) != 1 || !expired[0].Token.Equal(never) {
			t.Errorf("ExpireOverdue = %d entries", len(expired))
		}
		if s.Len() != 0 || r.Len() != 0 {
			t.Errorf("left behind: %d tokens, %d entries", s.Len(), r.Len())
		}
	})
}

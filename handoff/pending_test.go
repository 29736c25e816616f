package handoff

import (
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// silent is a backend that takes every offer and never answers.
func silent() *fakeTransport { return &fakeTransport{} }

// TestPendingCap: at MaxPending live tokens Begin falls back with
// ReasonFDPressure; a revoked token frees its place at once, an expired one
// once its TTL has passed (its attempt may still be running).
func TestPendingCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// TokenTTL below AckDeadline, so expired tokens outlive neither
		// their attempts nor the sweep of forgotten ones.
		o := NewOrchestrator(Config{MaxPending: 3, MaxInFlight: 8, TokenTTL: time.Minute, AckDeadline: 2 * time.Minute})
		var as []*Attempt
		var rs []*recorder
		for i := range 3 {
			a, d := o.Begin(keyA, uint64(i+1), "echo", capable)
			if a == nil {
				t.Fatalf("Begin %d: %+v", i, d)
			}
			as = append(as, a)
		}
		b, d := o.Begin(keyA, 4, "echo", capable)
		if b != nil || d.Reason != ReasonFDPressure || !strings.Contains(d.Detail, "pending") {
			t.Fatalf("4th Begin: %v %+v, want fd_pressure (pending)", b, d)
		}
		if s := o.Stats(); s.InFlight != 3 || s.Pending != 3 || s.Fallback(StageDecide, ReasonFDPressure) != 1 {
			t.Fatalf("stats %+v", s)
		}
		as[0].Abandon(ReasonCanceled, "")
		if as[0], d = o.Begin(keyA, 4, "echo", capable); as[0] == nil {
			t.Fatalf("Begin after a revocation: %+v", d)
		}
		for _, a := range as {
			r := newRecorder()
			a.Start(t.Context(), silent(), r.finish)
			rs = append(rs, r)
		}
		time.Sleep(time.Minute - time.Nanosecond)
		if a, d := o.Begin(keyA, 5, "echo", capable); a != nil || d.Reason != ReasonFDPressure {
			t.Fatalf("Begin before the TTL: %+v", d)
		}
		time.Sleep(time.Nanosecond)
		// Every token has expired: they no longer count, although their
		// attempts still await an ACK.
		fresh, d := o.Begin(keyA, 5, "echo", capable)
		if fresh == nil {
			t.Fatalf("Begin after the TTL: %+v", d)
		}
		if s := o.Stats(); s.Pending != 4 || s.InFlight != 4 {
			t.Fatalf("stats %+v, want the 3 expired and the fresh attempt", s)
		}
		// An ACK for an expired token ends its attempt.
		if err := o.Ack(2, as[1].Token(), true, "", time.Now()); !errors.Is(err, ErrTokenExpired) {
			t.Fatalf("ACK with an expired token: %v", err)
		}
		if out := rs[1].once(t); out.Reason != ReasonAckTimeout || out.Stage != StageAcknowledge || !strings.Contains(out.Detail, "expired") {
			t.Fatalf("outcome %+v", out)
		}
		fresh.Abandon(ReasonCanceled, "")
		time.Sleep(time.Minute) // the others reach their ACK deadline
		synctest.Wait()
		for _, r := range rs {
			r.once(t)
		}
		assertClean(t, o, fresh.Token(), 5)
	})
	if o := NewOrchestrator(Config{}); o.pending.max != defaultMaxPending || o.pending.ttl != defaultTokenTTL {
		t.Errorf("defaults: max %d ttl %v", o.pending.max, o.pending.ttl)
	}
}

// TestPendingTTL: an ACK just before the TTL consumes the token, one at the
// TTL finds it expired (ErrTokenExpired, which also matches ErrNotPending),
// and a second ACK finds nothing at all.
func TestPendingTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := NewOrchestrator(Config{TokenTTL: 30 * time.Second, AckDeadline: time.Minute})
		a, _ := o.Begin(keyA, 1, "echo", capable)
		b, _ := o.Begin(keyA, 2, "echo", capable)
		ra, rb := newRecorder(), newRecorder()
		a.Start(t.Context(), silent(), ra.finish)
		b.Start(t.Context(), silent(), rb.finish)
		time.Sleep(30*time.Second - time.Nanosecond)
		if err := o.Ack(1, a.Token(), true, "", time.Now()); err != nil {
			t.Fatalf("ACK just before the TTL: %v", err)
		}
		if !ra.once(t).Completed {
			t.Fatal("not completed")
		}
		time.Sleep(time.Nanosecond)
		err := o.Ack(2, b.Token(), true, "", time.Now())
		if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrNotPending) {
			t.Fatalf("ACK at the TTL: %v, want ErrTokenExpired (and ErrNotPending)", err)
		}
		err = o.Ack(2, b.Token(), true, "", time.Now())
		if !errors.Is(err, ErrNotPending) || errors.Is(err, ErrTokenExpired) {
			t.Fatalf("second ACK: %v, want plain ErrNotPending", err)
		}
		if errors.Is(ErrNotPending, ErrTokenExpired) {
			t.Error("ErrNotPending must not match ErrTokenExpired")
		}
		rb.once(t)
		assertClean(t, o, b.Token(), 2)
	})
}

// TestPendingExpiredTokenWithWrongBytes: an expired token can never be
// consumed, so an ACK at or after the TTL ends the attempt whatever it
// presents.
func TestPendingExpiredTokenWithWrongBytes(t *testing.T) {
	clk := &manualClock{now: t0}
	o := NewOrchestrator(Config{TokenTTL: time.Second, AckDeadline: time.Minute, Now: clk.Now})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	tr := &fakeTransport{onDeliver: func(of *Offer) {
		clk.Advance(time.Second)
		if err := o.Ack(1, Token{}, true, "", clk.Now()); !errors.Is(err, ErrTokenExpired) {
			t.Errorf("ACK: %v", err)
		}
	}}
	r := newRecorder()
	a.Start(t.Context(), tr, r.finish)
	if out := r.once(t); out.Stage != StageAcknowledge || out.Reason != ReasonAckTimeout {
		t.Fatalf("outcome %+v", out)
	}
	assertClean(t, o, a.Token(), 1)
}

// TestPendingCollisions rigs the random source: Begin never issues the zero
// token or a live one, retries exactly CollisionRetries times, and reports
// exhaustion and source failures as internal errors.
func TestPendingCollisions(t *testing.T) {
	begin := func(t *testing.T, o *Orchestrator, id uint64) (*Attempt, Decision) {
		t.Helper()
		return o.Begin(keyA, id, "echo", capable)
	}
	t.Run("exhausted with defaults", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1)}}
		o := NewOrchestrator(Config{Rand: r})
		if a, _ := begin(t, o, 1); a == nil || !a.Token().Equal(tokN(1)) {
			t.Fatal("first Begin")
		}
		r.draws = 0
		if a, d := begin(t, o, 2); a != nil || d.Reason != ReasonInternal || !strings.Contains(d.Detail, "collision") {
			t.Fatalf("second Begin: %+v, want internal_error (collision)", d)
		}
		if r.draws != 1+defaultCollisionRetries {
			t.Errorf("draws = %d, want %d", r.draws, 1+defaultCollisionRetries)
		}
		if s := o.Stats(); s.InFlight != 1 || s.Pending != 1 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("succeeds on last retry", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1), tokN(1), tokN(1), tokN(1), tokN(2)}}
		o := NewOrchestrator(Config{Rand: r, CollisionRetries: 3})
		begin(t, o, 1)
		a, d := begin(t, o, 2) // draws 1,1,1,2: three collisions then success
		if a == nil || !a.Token().Equal(tokN(2)) {
			t.Fatalf("Begin: %+v", d)
		}
	})
	t.Run("fails one retry short", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1), tokN(1), tokN(1), tokN(1), tokN(1), tokN(2)}}
		o := NewOrchestrator(Config{Rand: r, CollisionRetries: 3})
		begin(t, o, 1)
		if a, d := begin(t, o, 2); a != nil || !strings.Contains(d.Detail, "collision") {
			t.Fatalf("Begin: %+v, want a collision", d)
		}
		if s := o.Stats(); s.Pending != 1 {
			t.Errorf("pending = %d", s.Pending)
		}
	})
	t.Run("negative means no retries", func(t *testing.T) {
		r := &seqReader{toks: []Token{tokN(1)}}
		o := NewOrchestrator(Config{Rand: r, CollisionRetries: -1})
		begin(t, o, 1)
		r.draws = 0
		if a, _ := begin(t, o, 2); a != nil || r.draws != 1 {
			t.Fatalf("attempt %v, draws %d", a, r.draws)
		}
	})
	t.Run("zero token never issued", func(t *testing.T) {
		o := NewOrchestrator(Config{Rand: &seqReader{toks: []Token{{}, {}, tokN(3)}}})
		if a, d := begin(t, o, 1); a == nil || !a.Token().Equal(tokN(3)) {
			t.Fatalf("Begin: %+v", d)
		}
		o = NewOrchestrator(Config{Rand: &seqReader{toks: []Token{{}}}})
		if a, d := begin(t, o, 1); a != nil || !strings.Contains(d.Detail, "collision") {
			t.Fatalf("all-zero source: %+v", d)
		}
	})
	t.Run("expired token may be reissued", func(t *testing.T) {
		clk := &manualClock{now: t0}
		o := NewOrchestrator(Config{Rand: &seqReader{toks: []Token{tokN(4)}}, TokenTTL: time.Second,
			AckDeadline: time.Minute, Now: clk.Now})
		old, _ := begin(t, o, 1)
		if a, _ := begin(t, o, 2); a != nil {
			t.Fatal("a live token was issued twice")
		}
		clk.Advance(time.Second)
		a, d := begin(t, o, 2)
		if a == nil || !a.Token().Equal(tokN(4)) {
			t.Fatalf("reissue after expiry: %+v", d)
		}
		o.mu.Lock()
		live := o.pending.live(tokN(4), clk.Now())
		o.mu.Unlock()
		if !live {
			t.Error("reissued token not live with its new expiry")
		}
		old.Abandon(ReasonCanceled, "")
		a.Abandon(ReasonCanceled, "")
	})
	t.Run("random source error", func(t *testing.T) {
		o := NewOrchestrator(Config{Rand: errReader{errors.New("entropy gone")}})
		if a, d := begin(t, o, 1); a != nil || d.Reason != ReasonInternal ||
			!strings.Contains(d.Detail, "entropy gone") || !strings.Contains(d.Detail, "random source") {
			t.Fatalf("Begin: %+v", d)
		}
		if s := o.Stats(); s.InFlight != 0 || s.Pending != 0 {
			t.Errorf("stats %+v", s)
		}
	})
	t.Run("crypto/rand", func(t *testing.T) {
		o := NewOrchestrator(Config{})
		a, _ := begin(t, o, 1)
		b, _ := begin(t, o, 2)
		if a.Token().IsZero() || a.Token().Equal(b.Token()) {
			t.Error("crypto/rand tokens repeat or are zero")
		}
		o.mu.Lock()
		buf := o.pending.buf
		o.mu.Unlock()
		if !buf.IsZero() {
			t.Error("the draw buffer keeps a copy of a live token")
		}
	})
}

// TestAckDeadlineSynctest drives the deadline with the bubble's clock: an
// ACK one tick before the deadline completes its attempt, and an attempt
// without one ends exactly at the deadline.
func TestAckDeadlineSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := NewOrchestrator(Config{})
		start := time.Now()
		onTime, _ := o.Begin(keyA, 1, "echo", capable)
		never, _ := o.Begin(keyA, 2, "echo", capable)
		rOnTime, rNever := newRecorder(), newRecorder()
		onTime.Start(t.Context(), silent(), rOnTime.finish)
		never.Start(t.Context(), silent(), rNever.finish)
		time.Sleep(defaultAckDeadline - time.Nanosecond)
		if err := o.Ack(1, onTime.Token(), true, "", time.Now()); err != nil {
			t.Fatalf("ACK just before the deadline: %v", err)
		}
		if !rOnTime.once(t).Completed {
			t.Fatal("not completed")
		}
		if rNever.calls.Load() != 0 {
			t.Fatal("ended before its deadline")
		}
		out := rNever.wait()
		if got := time.Since(start); got != defaultAckDeadline || out.Reason != ReasonAckTimeout {
			t.Errorf("ended after %v with %+v", got, out)
		}
		assertClean(t, o, never.Token(), 2)
	})
}

func TestAckDeadlineClamp(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{0, defaultAckDeadline}, {-1, minAckDeadline}, {-time.Second, minAckDeadline},
		{time.Microsecond, minAckDeadline}, {time.Millisecond, time.Millisecond}, {time.Minute, time.Minute},
	} {
		if got := NewOrchestrator(Config{AckDeadline: c.in}).ackDeadline; got != c.want {
			t.Errorf("Config.AckDeadline %v -> %v, want %v", c.in, got, c.want)
		}
	}
}

package handoff

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"
)

func TestOrchestratorCompletes(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, d := o.Begin(keyA, 7, "echo", capable)
	if a == nil || !d.Attempt {
		t.Fatalf("Begin: %+v", d)
	}
	if a.ConnectionID() != 7 || a.Token().IsZero() || !a.Deadline().After(time.Now()) {
		t.Fatal("attempt accessors")
	}
	var seen Offer
	tr := &fakeTransport{onDeliver: func(of *Offer) {
		seen = *of
		if err := o.Ack(of.ConnectionID, of.Token, true, "", time.Now()); err != nil {
			t.Errorf("Ack: %v", err)
		}
	}}
	out := run(t.Context(), a, tr)
	if out != (Outcome{Completed: true, Stage: StageAcknowledge, Reached: true}) {
		t.Fatalf("outcome %+v", out)
	}
	if seen.ConnectionID != 7 || seen.Service != "echo" || !seen.Token.Equal(a.Token()) {
		t.Errorf("offer %+v", seen)
	}
	assertClean(t, o, a.Token(), 7)
	s := o.Stats()
	if s.Attempts != 1 || s.Completed != 1 || s.TotalFallbacks() != 0 {
		t.Errorf("stats %+v", s)
	}
	if a.Abandon(ReasonCanceled, "") != out {
		t.Error("Abandon after completion")
	}
}

func TestOrchestratorAsyncAckSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := NewOrchestrator(Config{})
		a, _ := o.Begin(keyA, 1, "echo", capable)
		start := time.Now()
		tr := &fakeTransport{onDeliver: func(of *Offer) { ackLater(o, of.ConnectionID, of.Token, true, "", time.Second) }}
		out := run(t.Context(), a, tr)
		if !out.Completed || time.Since(start) != time.Second {
			t.Fatalf("outcome %+v after %v", out, time.Since(start))
		}
		synctest.Wait()
		if v, _ := ackResults.LoadAndDelete(uint64(1)); v.(errOrNil).err != nil {
			t.Fatalf("Ack: %v", v)
		}
		assertClean(t, o, a.Token(), 1)
	})
}

func TestOrchestratorMismatchKeepsAttemptPending(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 3, "echo", capable)
	tr := &fakeTransport{onDeliver: func(of *Offer) {
		bad := of.Token
		bad[15] ^= 1
		if err := o.Ack(3, bad, true, "", time.Now()); !errors.Is(err, ErrTokenMismatch) {
			t.Errorf("wrong token: %v", err)
		}
		if err := o.Ack(3, Token{}, false, "", time.Now()); !errors.Is(err, ErrTokenMismatch) {
			t.Errorf("zero token: %v", err)
		}
		if err := o.Ack(4, of.Token, true, "", time.Now()); !errors.Is(err, ErrNotPending) {
			t.Errorf("wrong connection id: %v", err)
		}
		if err := o.Ack(3, of.Token, true, "", time.Now()); err != nil {
			t.Errorf("right token after mismatches: %v", err)
		}
		if err := o.Ack(3, of.Token, true, "", time.Now()); !errors.Is(err, ErrNotPending) {
			t.Errorf("replay: %v", err)
		}
	}}
	if out := run(t.Context(), a, tr); !out.Completed {
		t.Fatalf("outcome %+v", out)
	}
}

func TestOrchestratorAckBeforeOfferRefused(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 5, "echo", capable)
	if err := o.Ack(5, a.Token(), true, "", time.Now()); !errors.Is(err, ErrNotPending) {
		t.Fatalf("ACK before Start: %v", err)
	}
	tr := &fakeTransport{
		onTransfer: func(of *Offer) {
			if err := o.Ack(5, of.Token, true, "", time.Now()); !errors.Is(err, ErrNotPending) {
				t.Errorf("ACK during Transfer: %v", err)
			}
		},
		onDeliver: func(of *Offer) { o.Ack(5, of.Token, true, "", time.Now()) },
	}
	if out := run(t.Context(), a, tr); !out.Completed {
		t.Fatalf("outcome %+v", out)
	}
}

func TestOrchestratorDecide(t *testing.T) {
	o := NewOrchestrator(Config{})
	for _, c := range []struct {
		in   Inputs
		want Reason
	}{
		{Inputs{PolicyEnabled: true, BackendCapable: true}, ReasonClientUnsupported},
		{Inputs{ClientCapable: true, BackendCapable: true}, ReasonPolicyDisabled},
		{Inputs{ClientCapable: true, PolicyEnabled: true}, ReasonBackendNotCapable},
		{Inputs{ClientCapable: true, PolicyEnabled: true, BackendCapable: true, FDPressure: true}, ReasonFDPressure},
	} {
		a, d := o.Begin(keyA, 1, "echo", c.in)
		if a != nil || d.Attempt || d.Reason != c.want {
			t.Errorf("%+v: %v %+v", c.in, a, d)
		}
		if o.Stats().Fallback(StageDecide, c.want) != 1 {
			t.Errorf("%v not counted", c.want)
		}
	}
	s := o.Stats()
	if s.Attempts != 0 || s.TotalFallbacks() != 0 || s.Pending != 0 || s.InFlight != 0 {
		t.Errorf("refusals left state: %+v", s)
	}
	if s.Fallback(Stage(-1), ReasonNone) != 0 || s.Fallback(StageDecide, numReasons) != 0 {
		t.Error("out-of-range Fallback")
	}
}

func TestOrchestratorInFlightBound(t *testing.T) {
	o := NewOrchestrator(Config{MaxInFlight: 2})
	a1, _ := o.Begin(keyA, 1, "echo", capable)
	a2, _ := o.Begin(keyA, 2, "echo", capable)
	a3, d := o.Begin(keyA, 3, "echo", capable)
	if a1 == nil || a2 == nil || a3 != nil || d.Reason != ReasonFDPressure || d.Attempt {
		t.Fatalf("third Begin: %+v", d)
	}
	if s := o.Stats(); s.InFlight != 2 || s.Pending != 2 || s.Fallback(StageDecide, ReasonFDPressure) != 1 {
		t.Fatalf("stats %+v", s)
	}
	if out := a1.Abandon(ReasonNone, "negotiated write failed"); out.Reason != ReasonCanceled || out.Stage != StageTransfer {
		t.Fatalf("Abandon: %+v", out)
	}
	a3, d = o.Begin(keyA, 3, "echo", capable)
	if a3 == nil {
		t.Fatalf("Begin after a slot was freed: %+v", d)
	}
	a2.Abandon(ReasonCanceled, "")
	a3.Abandon(ReasonCanceled, "")

	def := NewOrchestrator(Config{})
	for i := range defaultMaxInFlight {
		if a, d := def.Begin(keyA, uint64(i), "echo", capable); a == nil {
			t.Fatalf("Begin %d: %+v", i, d)
		}
	}
	if _, d := def.Begin(keyA, 999, "echo", capable); d.Reason != ReasonFDPressure {
		t.Fatalf("default bound: %+v", d)
	}
}

// manualClock is a Config.Now for tests whose waits never reach a timer.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestOrchestratorFailureWindow(t *testing.T) {
	clk := &manualClock{now: t0}
	o := NewOrchestrator(Config{FailureLimit: 2, FailureWindow: 30 * time.Second, Now: clk.Now})
	fail := &fakeTransport{deliverErr: errors.New("ECONNRESET")}
	for i := range 2 {
		a, d := o.Begin(keyA, uint64(i), "echo", capable)
		if a == nil {
			t.Fatalf("Begin %d: %+v", i, d)
		}
		if out := run(t.Context(), a, fail); out.Reason != ReasonTransferFailed {
			t.Fatalf("outcome %+v", out)
		}
		clk.Advance(10 * time.Second)
	}
	a, d := o.Begin(keyA, 10, "echo", capable)
	if a != nil || d.Reason != ReasonRateLimited || d.RetryAfter != 10*time.Second {
		t.Fatalf("after 2 failures: %+v", d)
	}
	if a, _ := o.Begin(BackendKey{Service: "other", Version: "1"}, 11, "other", capable); a == nil {
		t.Fatal("other backend suppressed")
	} else {
		a.Abandon(ReasonCanceled, "")
	}
	clk.Advance(10 * time.Second)
	a, d = o.Begin(keyA, 12, "echo", capable)
	if a == nil {
		t.Fatalf("after the window: %+v", d)
	}
	if out := run(t.Context(), a, ackingTransport{o}); !out.Completed {
		t.Fatalf("outcome %+v", out)
	}
	// Success reset the window: two fresh failures are needed again.
	a, _ = o.Begin(keyA, 13, "echo", capable)
	run(t.Context(), a, fail)
	if a, d := o.Begin(keyA, 14, "echo", capable); a == nil {
		t.Fatalf("one failure after a success: %+v", d)
	} else {
		a.Abandon(ReasonCanceled, "")
	}
}

func TestOrchestratorTokenFailures(t *testing.T) {
	t.Run("token cap", func(t *testing.T) {
		o := NewOrchestrator(Config{MaxPending: 1, MaxInFlight: 4})
		a, _ := o.Begin(keyA, 1, "echo", capable)
		b, d := o.Begin(keyA, 2, "echo", capable)
		if b != nil || d.Reason != ReasonFDPressure || !strings.Contains(d.Detail, "pending") {
			t.Fatalf("%+v", d)
		}
		if s := o.Stats(); s.InFlight != 1 {
			t.Fatalf("slot not released: %+v", s)
		}
		a.Abandon(ReasonCanceled, "")
	})
	t.Run("collisions", func(t *testing.T) {
		o := NewOrchestrator(Config{Rand: &seqReader{toks: []Token{tokN(1)}}})
		a, _ := o.Begin(keyA, 1, "echo", capable)
		b, d := o.Begin(keyA, 2, "echo", capable)
		if b != nil || d.Reason != ReasonInternal || !strings.Contains(d.Detail, "collision") {
			t.Fatalf("%+v", d)
		}
		if s := o.Stats(); s.InFlight != 1 || s.Pending != 1 {
			t.Fatalf("%+v", s)
		}
		a.Abandon(ReasonCanceled, "")
		assertClean(t, o, a.Token(), 1)
	})
	t.Run("random source", func(t *testing.T) {
		o := NewOrchestrator(Config{Rand: errReader{errors.New("no entropy")}})
		if a, d := o.Begin(keyA, 1, "echo", capable); a != nil || d.Reason != ReasonInternal {
			t.Fatalf("%+v", d)
		}
		if s := o.Stats(); s.InFlight != 0 {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("duplicate connection id", func(t *testing.T) {
		o := NewOrchestrator(Config{})
		a, _ := o.Begin(keyA, 1, "echo", capable)
		b, d := o.Begin(keyA, 1, "echo", capable)
		if b != nil || d.Reason != ReasonInternal {
			t.Fatalf("%+v", d)
		}
		if s := o.Stats(); s.InFlight != 1 || s.Pending != 1 {
			t.Fatalf("%+v", s)
		}
		if out := run(t.Context(), a, ackingTransport{o}); !out.Completed {
			t.Fatalf("first attempt disturbed: %+v", out)
		}
	})
}

// An attempt the broker forgets (neither Start nor Abandon) is reclaimed lazily
// once its ACK deadline has passed and Begin needs its slot or token.
func TestOrchestratorSweepsForgottenAttempts(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
	}{
		{"in-flight bound", Config{MaxInFlight: 1}},
		{"token cap", Config{MaxPending: 1, MaxInFlight: 4}},
	} {
		t.Run(c.name, func(t *testing.T) {
			clk := &manualClock{now: t0}
			c.cfg.Now = clk.Now
			c.cfg.FailureLimit = 1
			o := NewOrchestrator(c.cfg)
			forgotten, _ := o.Begin(keyA, 1, "echo", capable)
			clk.Advance(defaultAckDeadline - 1)
			if a, d := o.Begin(keyA, 2, "echo", capable); a != nil || d.Reason != ReasonFDPressure {
				t.Fatalf("before the deadline: %+v", d)
			}
			clk.Advance(1)
			a, d := o.Begin(keyA, 2, "echo", capable)
			if a == nil {
				t.Fatalf("at the deadline: %+v", d)
			}
			tr := &fakeTransport{}
			out := run(t.Context(), forgotten, tr)
			if out.Stage != StageTransfer || out.Reason != ReasonAckTimeout || tr.transfers.Load() != 0 {
				t.Fatalf("forgotten attempt: %+v (transfers %d)", out, tr.transfers.Load())
			}
			if forgotten.Abandon(ReasonCanceled, "") != out {
				t.Error("Abandon after sweep")
			}
			if got := run(t.Context(), a, ackingTransport{o}); !got.Completed {
				t.Fatalf("new attempt: %+v", got)
			}
			assertClean(t, o, forgotten.Token(), 1)
		})
	}
}

func TestOrchestratorNackDetailTruncated(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	long := strings.Repeat("é", 200) // 400 bytes, 2 per rune
	tr := &fakeTransport{onDeliver: func(of *Offer) { o.Ack(1, of.Token, false, long, time.Now()) }}
	out := run(t.Context(), a, tr)
	if out.Reason != ReasonBackendRejected || len(out.Detail) > maxDetail || !utf8.ValidString(out.Detail) ||
		!strings.HasPrefix(long, out.Detail) || len(out.Detail) < maxDetail-1 {
		t.Fatalf("detail %d bytes, valid %v", len(out.Detail), utf8.ValidString(out.Detail))
	}
	if truncate("abc", 10) != "abc" || truncate("aé", 2) != "a" {
		t.Error("truncate")
	}
}

func TestOrchestratorFormatNoLeak(t *testing.T) {
	o := NewOrchestrator(Config{Rand: &seqReader{toks: []Token{secretToken}}})
	a, _ := o.Begin(keyA, 42, "echo", capable)
	for _, v := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
		for _, x := range []any{a, o} {
			got := fmt.Sprintf(v, x)
			assertNoLeak(t, fmt.Sprintf("%T %s", x, v), got, secretToken)
			if !strings.HasPrefix(got, "handoff.") {
				t.Errorf("%T %s = %q", x, v, got)
			}
		}
	}
	if got := a.LogValue().String(); strings.Contains(got, "redacted") || !strings.Contains(got, "42") {
		t.Errorf("LogValue = %s", got)
	}
	assertNoLeak(t, "LogValue", a.LogValue().String(), secretToken)
	out := a.Abandon(ReasonCanceled, "bye")
	if got := out.LogValue().String(); !strings.Contains(got, "canceled") || !strings.Contains(got, "transfer") {
		t.Errorf("Outcome.LogValue = %s", got)
	}
	if got := (Outcome{Completed: true}).LogValue().String(); !strings.Contains(got, "true") {
		t.Errorf("completed LogValue = %s", got)
	}
}

// TestOrchestratorConcurrentHandoffs runs 1000 handoffs at once against a
// fake backend that races two copies of every ACK and a forged one: each
// token must be consumed exactly once and nothing may be left behind.
func TestOrchestratorConcurrentHandoffs(t *testing.T) {
	const n = 1000
	// Generous deadlines: the race detector on a loaded 2-core machine is
	// slow, and this test is about exactly-once, not about timing.
	o := NewOrchestrator(Config{MaxInFlight: n, MaxPending: n, AckDeadline: time.Minute, TokenTTL: 2 * time.Minute})
	var (
		mu       sync.Mutex
		consumed = make(map[Token]int, n)
		issued   = make(map[Token]bool, n)
		acks     sync.WaitGroup
	)
	tr := &fakeTransport{onDeliver: func(of *Offer) {
		id, tok := of.ConnectionID, of.Token
		for i := range 3 {
			acks.Go(func() {
				presented := tok
				if i == 2 {
					presented[3] ^= 0xff // forged
				}
				err := o.Ack(id, presented, true, "", time.Now())
				switch {
				case err == nil:
					if i == 2 {
						t.Errorf("forged ACK accepted")
					}
					mu.Lock()
					consumed[tok]++
					mu.Unlock()
				case errors.Is(err, ErrNotPending), errors.Is(err, ErrTokenMismatch):
				default:
					t.Errorf("Ack: %v", err)
				}
			})
		}
	}}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			a, d := o.Begin(BackendKey{Service: "svc", Version: fmt.Sprint(i % 7)}, uint64(i), "svc", capable)
			if a == nil {
				t.Errorf("Begin %d: %+v", i, d)
				return
			}
			mu.Lock()
			if issued[a.Token()] {
				t.Errorf("token issued twice")
			}
			issued[a.Token()] = true
			mu.Unlock()
			if out := run(t.Context(), a, tr); !out.Completed {
				t.Errorf("handoff %d: %+v", i, out)
			}
		})
	}
	wg.Wait()
	acks.Wait()
	if len(consumed) != n {
		t.Fatalf("%d tokens consumed, want %d", len(consumed), n)
	}
	for _, c := range consumed {
		if c != 1 {
			t.Fatalf("a token was consumed %d times", c)
		}
	}
	s := o.Stats()
	if s.Attempts != n || s.Completed != n || s.TotalFallbacks() != 0 || s.InFlight != 0 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestOrchestratorConcurrentMixed mixes completions, rejections, transport
// failures, timeouts, abandonments before Start and while the ACK is awaited
// under the race detector in a synctest bubble; the counters must add up and
// nothing may be left behind.
func TestOrchestratorConcurrentMixed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 300
		o := NewOrchestrator(Config{MaxInFlight: n, FailureLimit: n})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				a, d := o.Begin(keyA, uint64(i), "svc", capable)
				if a == nil {
					t.Errorf("Begin: %+v", d)
					return
				}
				// Every other attempt of each kind is Windows-style.
				tr := &fakeTransport{handle: uint64(i/6%2) * 0x40}
				switch i % 6 {
				case 0:
					tr.onDeliver = func(of *Offer) { ackLater(o, of.ConnectionID, of.Token, true, "", time.Second) }
				case 1:
					tr.onDeliver = func(of *Offer) { ackLater(o, of.ConnectionID, of.Token, false, "no", time.Second) }
				case 2:
					tr.deliverErr = errors.New("EPIPE")
				case 3: // no ACK: times out
				case 4:
					a.Abandon(ReasonCanceled, "")
				case 5:
					tr.onDeliver = func(*Offer) {
						time.AfterFunc(time.Second, func() { a.Abandon(ReasonTransferFailed, "control connection closed") })
					}
				}
				run(t.Context(), a, tr)
			})
		}
		wg.Wait()
		synctest.Wait()
		for i := range n {
			ackResults.Delete(uint64(i))
		}
		s := o.Stats()
		per := uint64(n / 6)
		if s.Attempts != n || s.Completed != per ||
			s.Fallback(StageAcknowledge, ReasonBackendRejected) != per ||
			s.Fallback(StageDeliver, ReasonTransferFailed) != per ||
			s.Fallback(StageAwaitAck, ReasonAckTimeout) != per ||
			s.Fallback(StageTransfer, ReasonCanceled) != per ||
			s.Fallback(StageAwaitAck, ReasonTransferFailed) != per ||
			// Windows-style deliver failures are reclaimed; timeouts and
			// abandonments with the offer out leak.
			s.Reclaimed != per/2 || s.Leaked != per ||
			s.InFlight != 0 || s.Pending != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestOrchestratorInFlightBoundConcurrent: however Begin and Abandon
// interleave, no more than MaxInFlight attempts are ever held.
func TestOrchestratorInFlightBoundConcurrent(t *testing.T) {
	const bound = 10
	o := NewOrchestrator(Config{MaxInFlight: bound})
	var (
		held, peak atomic.Int64
		ids        atomic.Uint64
		wg         sync.WaitGroup
	)
	for range 50 {
		wg.Go(func() {
			for range 200 {
				a, _ := o.Begin(keyA, ids.Add(1), "echo", capable)
				if a == nil {
					continue
				}
				n := held.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				held.Add(-1) // before the slot is released, so held never exceeds the orchestrator's count
				a.Abandon(ReasonCanceled, "")
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > bound || p == 0 {
		t.Fatalf("peak %d attempts held, bound %d", p, bound)
	}
	if s := o.Stats(); s.InFlight != 0 || s.Pending != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// BenchmarkOrchestratorStart is one handoff on the broker's path: Begin,
// Start, and an ACK that arrives while Deliver runs (the common case).
func BenchmarkOrchestratorStart(b *testing.B) {
	o := NewOrchestrator(Config{})
	tr := ackingTransport{o}
	ctx := context.Background()
	var last Outcome
	finish := func(out Outcome) { last = out }
	var id uint64
	b.ReportAllocs()
	for b.Loop() {
		id++
		a, d := o.Begin(keyA, id, "echo", capable)
		if a == nil {
			b.Fatalf("Begin: %+v", d)
		}
		a.Start(ctx, tr, finish)
		if !last.Completed {
			b.Fatalf("Start: %+v", last)
		}
	}
}

func BenchmarkOrchestratorStartParallel(b *testing.B) {
	o := NewOrchestrator(Config{MaxInFlight: 1 << 16, MaxPending: 1 << 16})
	tr := ackingTransport{o}
	ctx := context.Background()
	var id atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var last Outcome
		finish := func(out Outcome) { last = out }
		for pb.Next() {
			a, d := o.Begin(keyA, id.Add(1), "echo", capable)
			if a == nil {
				b.Errorf("Begin: %+v", d)
				return
			}
			a.Start(ctx, tr, finish)
			if !last.Completed {
				b.Errorf("Start: %+v", last)
				return
			}
		}
	})
}

// BenchmarkOrchestratorAbandon is a token's shortest life: issued by Begin
// and revoked by Abandon.
func BenchmarkOrchestratorAbandon(b *testing.B) {
	o := NewOrchestrator(Config{})
	var id uint64
	b.ReportAllocs()
	for b.Loop() {
		id++
		a, d := o.Begin(keyA, id, "echo", capable)
		if a == nil {
			b.Fatalf("Begin: %+v", d)
		}
		a.Abandon(ReasonCanceled, "")
	}
}

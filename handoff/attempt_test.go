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
)

// fakeTransport injects failures at each stage. handle != 0 makes it behave
// like the Windows transport: Transfer places a handle in the backend (even
// when it then fails, as when a check after DuplicateHandle fails).
type fakeTransport struct {
	handle        uint64
	transferErr   error
	transferPanic bool
	deliverErr    error
	deliverPanic  bool
	reached       bool
	reclaimErr    error
	reclaimPanic  bool
	onTransfer    func(o *Offer)
	onDeliver     func(o *Offer) // the "backend": runs before Deliver returns

	transfers, delivers, reclaims atomic.Int32
}

func (f *fakeTransport) Transfer(ctx context.Context, o *Offer) error {
	f.transfers.Add(1)
	o.HandleValue = f.handle
	if f.onTransfer != nil {
		f.onTransfer(o)
	}
	if f.transferPanic {
		panic("transfer exploded")
	}
	if f.transferErr == errFromCtx {
		return ctx.Err()
	}
	return f.transferErr
}

func (f *fakeTransport) Deliver(ctx context.Context, o *Offer) (bool, error) {
	f.delivers.Add(1)
	if f.onDeliver != nil {
		f.onDeliver(o)
	}
	if f.deliverPanic {
		panic(errors.New("deliver exploded"))
	}
	if f.deliverErr == errFromCtx {
		return f.reached, ctx.Err()
	}
	if f.deliverErr != nil {
		return f.reached, f.deliverErr
	}
	return true, nil
}

func (f *fakeTransport) Reclaim(o *Offer) error {
	f.reclaims.Add(1)
	if o.HandleValue != f.handle || f.handle == 0 {
		return fmt.Errorf("reclaim of unexpected handle %#x", o.HandleValue)
	}
	if f.reclaimPanic {
		panic("reclaim exploded")
	}
	return f.reclaimErr
}

// errFromCtx tells the fake to return the context's error (it cancels first).
var errFromCtx = errors.New("return ctx.Err()")

// ackingTransport is a backend that ACKs every offer before Deliver returns.
type ackingTransport struct{ o *Orchestrator }

func (ackingTransport) Transfer(context.Context, *Offer) error { return nil }
func (t ackingTransport) Deliver(_ context.Context, o *Offer) (bool, error) {
	return true, t.o.Ack(o.ConnectionID, o.Token, true, "", t.o.now())
}
func (ackingTransport) Reclaim(*Offer) error { return nil }

// recorder collects the outcomes Start hands to finish.
type recorder struct {
	calls atomic.Int32
	out   atomic.Pointer[Outcome]
	done  chan struct{} // closed by the first call
}

func newRecorder() *recorder { return &recorder{done: make(chan struct{})} }

func (r *recorder) finish(out Outcome) {
	r.out.Store(&out)
	if r.calls.Add(1) == 1 {
		close(r.done)
	}
}

// wait blocks until finish has run (in a synctest bubble the fake clock
// advances meanwhile) and returns the outcome.
func (r *recorder) wait() Outcome {
	<-r.done
	return *r.out.Load()
}

func (r *recorder) once(t *testing.T) Outcome {
	t.Helper()
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("finish called %d times, want exactly once", n)
	}
	return *r.out.Load()
}

// run is the synchronous form the tests use: Start (the broker's entry
// point) and wait for the outcome it hands to finish.
func run(ctx context.Context, a *Attempt, t Transport) Outcome {
	r := newRecorder()
	a.Start(ctx, t, r.finish)
	return r.wait()
}

// assertClean checks that nothing of the attempt (token tok, connection
// connID) is left in o.
func assertClean(t *testing.T, o *Orchestrator, tok Token, connID uint64) {
	t.Helper()
	now := o.now()
	if err := o.Ack(connID, tok, true, "", now); !errors.Is(err, ErrNotPending) {
		t.Errorf("Ack after the end: %v, want ErrNotPending", err)
	}
	o.mu.Lock()
	n, begun, live := len(o.pending.byConn), o.begun, o.pending.live(tok, now)
	o.mu.Unlock()
	s := o.Stats()
	if n != 0 || begun != 0 || live || s.Pending != 0 || s.InFlight != 0 {
		t.Errorf("left behind: attempts=%d begun=%d token live=%v pending=%d inflight=%d",
			n, begun, live, s.Pending, s.InFlight)
	}
}

type errKind struct {
	name   string
	err    error
	panics bool
	want   Reason
}

var transportErrKinds = []errKind{
	{name: "permission", err: fmt.Errorf("OpenProcess: %w", ErrPermissionDenied), want: ReasonPermissionDenied},
	{name: "integrity", err: fmt.Errorf("peer pid changed: %w", ErrIntegrity), want: ReasonIntegrityMismatch},
	{name: "generic", err: errors.New("broken pipe"), want: ReasonTransferFailed},
	{name: "ctx", err: errFromCtx, want: ReasonCanceled},
	{name: "panic", panics: true, want: ReasonTransferFailed},
}

type platform struct {
	name       string
	handle     uint64
	reclaimErr error
}

var platforms = []platform{
	{"unix", 0, nil},
	{"windows", 0x1a4, nil},
	{"windows_reclaim_fails", 0x1a4, errors.New("ERROR_ACCESS_DENIED")},
}

// matrixEnv is what a case's hooks act on. a is set after Begin, before
// Start, so hooks that run inside Transfer or Deliver can reach it.
type matrixEnv struct {
	f      *fakeTransport
	cancel context.CancelFunc
	o      *Orchestrator
	a      *Attempt
	// early records what an Abandon called from a hook returned.
	early atomic.Pointer[Outcome]
}

// abandon is how the broker gives up when the control connection drops.
func (e *matrixEnv) abandon() {
	out := e.a.Abandon(ReasonTransferFailed, "control connection closed")
	e.early.Store(&out)
}

// matrixCase is one injected failure.
type matrixCase struct {
	name  string
	cfg   Config
	setup func(e *matrixEnv)
	// precancel cancels ctx before Start; abandonFirst abandons the attempt
	// before Start.
	precancel, abandonFirst bool
	// async: the outcome is decided after Start returns (while the ACK is
	// awaited); every other outcome must reach finish before Start returns.
	async bool
	// uncounted: a backend-fault reason that must not count against the
	// backend (the attempt never reached the transport).
	uncounted bool
	stage     Stage
	reason    Reason
	reached   bool   // offer may have reached the backend
	ackErr    error  // expected error from the backend's Ack, if it sends one
	detail    string // substring expected in Outcome.Detail
	transfers int32
	delivers  int32
}

func matrixCases() []matrixCase {
	var cs []matrixCase
	for _, k := range transportErrKinds {
		cs = append(cs, matrixCase{
			name: "transfer/" + k.name, stage: StageTransfer, reason: k.want, transfers: 1,
			setup: func(e *matrixEnv) {
				e.f.transferErr, e.f.transferPanic = k.err, k.panics
				if k.err == errFromCtx {
					e.f.onTransfer = func(*Offer) { e.cancel() }
				}
			},
		})
		for _, reached := range []bool{false, true} {
			cs = append(cs, matrixCase{
				name:  fmt.Sprintf("deliver/%s/reached=%v", k.name, reached),
				stage: StageDeliver, reason: k.want, reached: reached || k.panics, transfers: 1, delivers: 1,
				setup: func(e *matrixEnv) {
					e.f.deliverErr, e.f.deliverPanic, e.f.reached = k.err, k.panics, reached
					if k.err == errFromCtx {
						e.f.onDeliver = func(*Offer) { e.cancel() }
					}
				},
			})
		}
	}
	cs = append(cs,
		matrixCase{
			name: "transfer/ctx_done_before_start", precancel: true,
			stage: StageTransfer, reason: ReasonCanceled,
		},
		matrixCase{
			name: "deliver/ctx_done_after_transfer", stage: StageDeliver, reason: ReasonCanceled, transfers: 1,
			setup: func(e *matrixEnv) { e.f.onTransfer = func(*Offer) { e.cancel() } },
		},
		matrixCase{
			// The deadline's timer ends the attempt: a handle left in the
			// backend is leaked.
			name: "await_ack/timeout", async: true, stage: StageAwaitAck, reason: ReasonAckTimeout, reached: true,
			transfers: 1, delivers: 1, detail: "no ACK",
		},
		matrixCase{
			name: "await_ack/ctx", async: true, stage: StageAwaitAck, reason: ReasonCanceled, reached: true,
			transfers: 1, delivers: 1, detail: "canceled",
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(*Offer) { time.AfterFunc(time.Second, e.cancel) }
			},
		},
		matrixCase{
			name: "await_ack/ctx_done_during_deliver", stage: StageAwaitAck, reason: ReasonCanceled, reached: true,
			transfers: 1, delivers: 1, detail: "canceled",
			setup: func(e *matrixEnv) { e.f.onDeliver = func(*Offer) { e.cancel() } },
		},
		matrixCase{
			name: "await_ack/wrong_token_then_timeout", async: true, stage: StageAwaitAck, reason: ReasonAckTimeout,
			reached: true, transfers: 1, delivers: 1, ackErr: ErrTokenMismatch,
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(of *Offer) {
					bad := of.Token
					bad[0]++
					ackLater(e.o, of.ConnectionID, bad, true, "", time.Second)
				}
			},
		},
		matrixCase{
			name: "acknowledge/nack", async: true, stage: StageAcknowledge, reason: ReasonBackendRejected, reached: true,
			transfers: 1, delivers: 1, detail: "quiescing",
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(of *Offer) { ackLater(e.o, of.ConnectionID, of.Token, false, "quiescing", time.Second) }
			},
		},
		matrixCase{
			name: "acknowledge/late_ack", stage: StageAcknowledge, reason: ReasonAckTimeout, reached: true,
			transfers: 1, delivers: 1, ackErr: ErrAckLate,
			setup: func(e *matrixEnv) {
				// The ACK carries a receive time at the deadline while the
				// attempt is still pending (the deadline's timer has not
				// fired yet).
				e.f.onDeliver = func(of *Offer) {
					ackAt(e.o, of.ConnectionID, of.Token, true, time.Now().Add(defaultAckDeadline))
				}
			},
		},
		matrixCase{
			name: "acknowledge/late_nack", stage: StageAcknowledge, reason: ReasonAckTimeout, reached: true,
			transfers: 1, delivers: 1, ackErr: ErrAckLate,
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(of *Offer) {
					ackAt(e.o, of.ConnectionID, of.Token, false, time.Now().Add(defaultAckDeadline+time.Second))
				}
			},
		},
		matrixCase{
			// TokenTTL shorter than the ACK deadline: the token expires in the
			// bubble's time before the (otherwise timely) ACK arrives.
			name: "acknowledge/token_expired", cfg: Config{TokenTTL: time.Second}, async: true,
			stage: StageAcknowledge, reason: ReasonAckTimeout, reached: true,
			transfers: 1, delivers: 1, ackErr: ErrTokenExpired, detail: "expired",
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(of *Offer) { ackLater(e.o, of.ConnectionID, of.Token, true, "", 2*time.Second) }
			},
		},

		// The broker abandons the attempt (its control connection closed)
		// at each point of the life cycle.
		matrixCase{
			name: "abandon/before_start", abandonFirst: true, uncounted: true,
			stage: StageTransfer, reason: ReasonTransferFailed, detail: "control connection closed",
		},
		matrixCase{
			// The offer never went out: a transferred handle is reclaimed.
			name: "abandon/during_transfer", stage: StageDeliver, reason: ReasonTransferFailed,
			transfers: 1, detail: "control connection closed",
			setup: func(e *matrixEnv) { e.f.onTransfer = func(*Offer) { e.abandon() } },
		},
		matrixCase{
			// Transfer's own error wins over the abandonment.
			name: "abandon/during_failing_transfer", stage: StageTransfer, reason: ReasonPermissionDenied,
			transfers: 1, detail: "OpenProcess",
			setup: func(e *matrixEnv) {
				e.f.transferErr = fmt.Errorf("OpenProcess: %w", ErrPermissionDenied)
				e.f.onTransfer = func(*Offer) { e.abandon() }
			},
		},
		matrixCase{
			// Deliver sent the offer: a handle in the backend is leaked.
			name: "abandon/during_deliver", stage: StageAwaitAck, reason: ReasonTransferFailed, reached: true,
			transfers: 1, delivers: 1, detail: "control connection closed",
			setup: func(e *matrixEnv) { e.f.onDeliver = func(*Offer) { e.abandon() } },
		},
		matrixCase{
			// Deliver proved the offer never went out: reclaimed.
			name: "abandon/during_deliver_not_reached", stage: StageDeliver, reason: ReasonTransferFailed,
			transfers: 1, delivers: 1, detail: "EPIPE",
			setup: func(e *matrixEnv) {
				e.f.deliverErr = errors.New("sendmsg: EPIPE")
				e.f.onDeliver = func(*Offer) { e.abandon() }
			},
		},
		matrixCase{
			name: "abandon/awaiting_ack", async: true, stage: StageAwaitAck, reason: ReasonTransferFailed, reached: true,
			transfers: 1, delivers: 1, detail: "control connection closed",
			setup: func(e *matrixEnv) {
				e.f.onDeliver = func(*Offer) { time.AfterFunc(time.Second, e.abandon) }
			},
		},
	)
	return cs
}

// ackResults collects errors from ACKs sent by the fake backends in a bubble.
var ackResults sync.Map // connID -> error

func ackLater(o *Orchestrator, id uint64, tok Token, accepted bool, detail string, after time.Duration) {
	time.AfterFunc(after, func() {
		ackResults.Store(id, errOrNil{o.Ack(id, tok, accepted, detail, time.Now())})
	})
}

func ackAt(o *Orchestrator, id uint64, tok Token, accepted bool, at time.Time) {
	ackResults.Store(id, errOrNil{o.Ack(id, tok, accepted, "", at)})
}

type errOrNil struct{ err error }

var connSeq atomic.Uint64

// TestAttemptFailureMatrix injects every error kind at every stage, and an
// abandonment at every point, on Unix-style and Windows-style transports,
// through Start as the broker calls it. It checks the outcome (including
// handle reclaim and leak accounting), where finish ran and that it ran
// once, the counters and the failure window, and that the attempt left
// nothing behind.
func TestAttemptFailureMatrix(t *testing.T) {
	for _, pf := range platforms {
		for _, c := range matrixCases() {
			t.Run(pf.name+"/"+c.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					runMatrixCase(t, pf, c)
				})
			})
		}
	}
}

func runMatrixCase(t *testing.T, pf platform, c matrixCase) {
	cfg := c.cfg
	cfg.FailureLimit = 1 // one backend failure closes the window
	o := NewOrchestrator(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	e := &matrixEnv{f: &fakeTransport{handle: pf.handle, reclaimErr: pf.reclaimErr}, cancel: cancel, o: o}
	if c.setup != nil {
		c.setup(e)
	}
	f := e.f
	id := connSeq.Add(1)
	start := time.Now()
	a, d := o.Begin(keyA, id, "echo", capable)
	if a == nil || !d.Attempt || d.Reason != ReasonNone {
		t.Fatalf("Begin = %v, %+v", a, d)
	}
	e.a = a
	tok := a.Token()
	if c.precancel {
		cancel()
	}
	var abandoned Outcome
	if c.abandonFirst {
		abandoned = a.Abandon(ReasonTransferFailed, "control connection closed")
	}
	r := newRecorder()
	a.Start(ctx, f, r.finish)
	if inline := r.calls.Load() == 1; inline == c.async {
		t.Errorf("finish ran before Start returned: %v, want %v", inline, !c.async)
	}
	out := r.wait()
	synctest.Wait() // let any fake-backend callbacks finish
	r.once(t)
	if c.abandonFirst && abandoned != out {
		t.Errorf("Abandon before Start returned %+v, Start reported %+v", abandoned, out)
	}
	// Abandon returns the outcome it decided (awaiting the ACK), and the
	// zero Outcome while a transport call runs (Start decides later).
	if early := e.early.Load(); early != nil {
		if want := map[bool]Outcome{true: out}[c.async]; *early != want {
			t.Errorf("Abandon from a hook returned %+v, want %+v", *early, want)
		}
	}

	handle := pf.handle != 0
	wantReclaim := handle && !c.reached && c.stage <= StageDeliver && c.transfers > 0
	want := Outcome{
		Stage:     c.stage,
		Reason:    c.reason,
		Reached:   c.reached,
		Reclaimed: wantReclaim && pf.reclaimErr == nil,
		Leaked: (wantReclaim && pf.reclaimErr != nil) ||
			(handle && c.reached && c.stage != StageAcknowledge),
	}
	if c.transfers > 0 {
		// The value Transfer placed in the backend, for the log line of
		// a leak.
		want.HandleValue = pf.handle
	}
	got := out
	got.Detail = ""
	if got != want {
		t.Errorf("outcome = %+v\n          want %+v", out, want)
	}
	if !strings.Contains(out.Detail, c.detail) {
		t.Errorf("detail %q lacks %q", out.Detail, c.detail)
	}
	if wantReclaim && pf.reclaimErr != nil && !strings.Contains(out.Detail, "reclaim failed") {
		t.Errorf("detail %q does not mention the failed reclaim", out.Detail)
	}
	assertNoLeak(t, "detail", out.Detail, tok)
	var wantReclaims int32
	if wantReclaim {
		wantReclaims = 1
	}
	if f.transfers.Load() != c.transfers || f.delivers.Load() != c.delivers || f.reclaims.Load() != wantReclaims {
		t.Errorf("calls: transfer %d deliver %d reclaim %d; want %d %d %d", f.transfers.Load(),
			f.delivers.Load(), f.reclaims.Load(), c.transfers, c.delivers, wantReclaims)
	}
	if v, ok := ackResults.LoadAndDelete(id); c.ackErr != nil && (!ok || !errors.Is(v.(errOrNil).err, c.ackErr)) {
		t.Errorf("backend's Ack returned %v, want %v", v, c.ackErr)
	} else if ok && c.ackErr == nil && v.(errOrNil).err != nil {
		t.Errorf("backend's Ack returned %v", v.(errOrNil).err)
	}
	if c.stage == StageAwaitAck && c.reason == ReasonAckTimeout {
		if el := time.Since(start); el != defaultAckDeadline {
			t.Errorf("timed out after %v (fake clock), want %v", el, defaultAckDeadline)
		}
	}
	assertClean(t, o, tok, id)

	s := o.Stats()
	if s.Attempts != 1 || s.Completed != 0 || s.Fallback(c.stage, c.reason) != 1 || s.TotalFallbacks() != 1 {
		t.Errorf("stats: %+v", s)
	}
	if (s.Leaked == 1) != want.Leaked || (s.Reclaimed == 1) != want.Reclaimed {
		t.Errorf("leak counters: leaked %d reclaimed %d", s.Leaked, s.Reclaimed)
	}
	// Backend faults close the one-failure window; ctx ends, broker
	// faults and attempts that never reached the transport do not.
	next := o.policy.shouldAttempt(keyA, capable, time.Now())
	if wantLimited := c.reason.backendFault() && !c.uncounted; (next.Reason == ReasonRateLimited) != wantLimited {
		t.Errorf("after %v: next decision %+v", c.reason, next)
	}
	// Finished means finished: Abandon and Start report the same outcome
	// and touch nothing.
	if again := a.Abandon(ReasonCanceled, "late"); again != out {
		t.Errorf("Abandon after the end = %+v", again)
	}
	if again := run(ctx, a, f); again != out {
		t.Errorf("second Start = %+v", again)
	}
	if f.transfers.Load() != c.transfers || f.reclaims.Load() != wantReclaims {
		t.Error("second Start called the transport")
	}
	if s2 := o.Stats(); s2 != s {
		t.Errorf("calls after the end changed the stats: %+v", s2)
	}
}

// TestStartAckLater: Start returns before the ACK; Ack's caller runs finish.
func TestStartAckLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, accepted := range []bool{true, false} {
			o := NewOrchestrator(Config{})
			a, _ := o.Begin(keyA, 1, "echo", capable)
			r := newRecorder()
			a.Start(t.Context(), &fakeTransport{handle: 0x20}, r.finish)
			if r.calls.Load() != 0 {
				t.Fatal("finish ran before the ACK arrived")
			}
			if s := o.Stats(); s.InFlight != 1 || s.Pending != 1 {
				t.Fatalf("while awaiting the ACK: %+v, want 1 in flight and pending", s)
			}
			time.Sleep(time.Second) // the bubble's clock: the backend takes a second
			if err := o.Ack(1, a.Token(), accepted, "no", time.Now()); err != nil {
				t.Fatal(err)
			}
			out := r.once(t) // on this goroutine, before Ack returned
			want := Outcome{Completed: true, Stage: StageAcknowledge, Reached: true, HandleValue: 32}
			if !accepted {
				// The backend closed the handle it rejected: not leaked.
				want = Outcome{Stage: StageAcknowledge, Reason: ReasonBackendRejected, Reached: true, HandleValue: 32, Detail: "no"}
			}
			if out != want {
				t.Fatalf("outcome %+v, want %+v", out, want)
			}
			synctest.Wait() // the stopped expiry must not fire later
			assertClean(t, o, a.Token(), 1)
			a.expire() // as if the timer had fired while the ACK was being taken
			time.Sleep(2 * defaultAckDeadline)
			if r.calls.Load() != 1 {
				t.Fatal("finish ran again")
			}
		}
	})
}

// TestStartExpiresLeaksHandle: without an ACK, finish runs at the ACK
// deadline, and a handle duplicated into the backend is counted as leaked:
// the backend neither adopted nor rejected it, and it may hold it, so it
// cannot be reclaimed.
func TestStartExpiresLeaksHandle(t *testing.T) {
	for _, handle := range []uint64{0, 0x1a4} {
		t.Run(fmt.Sprintf("handle=%#x", handle), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := NewOrchestrator(Config{AckDeadline: 3 * time.Second})
				a, _ := o.Begin(keyA, 2, "echo", capable)
				begun := time.Now()
				r := newRecorder()
				tr := &fakeTransport{handle: handle}
				a.Start(t.Context(), tr, r.finish)
				time.Sleep(3*time.Second - time.Nanosecond)
				synctest.Wait()
				if r.calls.Load() != 0 {
					t.Fatal("finish ran before the ACK deadline")
				}
				time.Sleep(time.Nanosecond)
				synctest.Wait()
				out := r.once(t)
				want := Outcome{Stage: StageAwaitAck, Reason: ReasonAckTimeout, Reached: true, Leaked: handle != 0,
					HandleValue: handle, Detail: "handoff: no ACK before the deadline"}
				if out != want {
					t.Fatalf("outcome %+v\n   want %+v", out, want)
				}
				if d := time.Since(begun); d != 3*time.Second {
					t.Fatalf("expired after %v, want the 3 s deadline", d)
				}
				if tr.reclaims.Load() != 0 {
					t.Fatal("reclaimed a handle the backend may hold")
				}
				if err := o.Ack(2, a.Token(), true, "", time.Now()); !errors.Is(err, ErrNotPending) {
					t.Fatalf("late Ack: %v, want ErrNotPending", err)
				}
				assertClean(t, o, a.Token(), 2)
				s := o.Stats()
				if s.Fallback(StageAwaitAck, ReasonAckTimeout) != 1 || s.Leaked != uint64(min(handle, 1)) {
					t.Fatalf("stats %+v", s)
				}
			})
		})
	}
}

// TestStartInline: outcomes known when Deliver returns are reported on the
// caller's goroutine, before Start returns.
func TestStartInline(t *testing.T) {
	o := NewOrchestrator(Config{})
	cases := []struct {
		name string
		tr   Transport
		want func(Outcome) bool
	}{
		{"ack during deliver", ackingTransport{o}, func(out Outcome) bool { return out.Completed }},
		{"deliver failed, not reached", &fakeTransport{deliverErr: errors.New("EPIPE")},
			func(out Outcome) bool {
				return out.Stage == StageDeliver && out.Reason == ReasonTransferFailed && !out.Reached
			}},
		{"deliver failed after reaching", &fakeTransport{deliverErr: errors.New("short"), reached: true},
			func(out Outcome) bool { return out.Stage == StageDeliver && out.Reached }},
		{"transfer failed", &fakeTransport{transferErr: ErrPermissionDenied},
			func(out Outcome) bool { return out.Stage == StageTransfer && out.Reason == ReasonPermissionDenied }},
		{"nil transport", nil, func(out Outcome) bool { return out.Reason == ReasonInternal }},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := uint64(100 + i)
			a, _ := o.Begin(keyA, id, "echo", capable)
			r := newRecorder()
			a.Start(t.Context(), c.tr, r.finish)
			if out := r.once(t); !c.want(out) {
				t.Fatalf("outcome %+v", out)
			}
			assertClean(t, o, a.Token(), id)
			a.Start(t.Context(), c.tr, r.finish) // a finished attempt reports its outcome again
			if r.calls.Load() != 2 {
				t.Fatal("Start on a finished attempt did not report")
			}
		})
	}
	r := newRecorder()
	(*Attempt)(nil).Start(t.Context(), nil, r.finish)
	if out := r.once(t); out.Reason != ReasonInternal {
		t.Fatalf("nil attempt: %+v", out)
	}
	a, _ := o.Begin(keyA, 200, "echo", capable)
	a.Start(t.Context(), ackingTransport{o}, nil) // a nil finish is allowed
	assertClean(t, o, a.Token(), 200)
}

// An accepted ACK that arrives although Deliver then reports an error wins:
// the backend has the connection.
func TestAttemptAckWinsOverDeliverError(t *testing.T) {
	for _, reached := range []bool{false, true} {
		o := NewOrchestrator(Config{})
		a, _ := o.Begin(keyA, 9, "echo", capable)
		tr := &fakeTransport{handle: 0x10, reached: reached, deliverErr: errors.New("EAGAIN after send"),
			onDeliver: func(of *Offer) { o.Ack(9, of.Token, true, "", time.Now()) }}
		out := run(t.Context(), a, tr)
		if !out.Completed || out.Leaked || tr.reclaims.Load() != 0 {
			t.Fatalf("reached=%v: outcome %+v, reclaims %d", reached, out, tr.reclaims.Load())
		}
		assertClean(t, o, a.Token(), 9)
	}
}

// An ACK taken while Deliver runs wins over an abandonment made meanwhile:
// the backend adopted the connection before it was given up.
func TestAttemptAckWinsOverAbandon(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 9, "echo", capable)
	tr := &fakeTransport{handle: 0x10, onDeliver: func(of *Offer) {
		if out := a.Abandon(ReasonTransferFailed, "control connection closed"); out != (Outcome{}) {
			t.Errorf("Abandon during Deliver = %+v", out)
		}
		if err := o.Ack(9, of.Token, true, "", time.Now()); err != nil {
			t.Errorf("Ack after Abandon during Deliver: %v", err)
		}
	}}
	if out := run(t.Context(), a, tr); !out.Completed || out.Leaked || tr.reclaims.Load() != 0 {
		t.Fatalf("outcome %+v, reclaims %d", out, tr.reclaims.Load())
	}
	assertClean(t, o, a.Token(), 9)
}

// TestAbandonAwaitingLeaksHandle: a control connection that drops while the
// offer awaits its ACK ends the attempt at once, on the abandoning
// goroutine; a handle in the backend is counted as leaked, never reclaimed.
func TestAbandonAwaitingLeaksHandle(t *testing.T) {
	for _, handle := range []uint64{0, 0x1a4} {
		t.Run(fmt.Sprintf("handle=%#x", handle), func(t *testing.T) {
			o := NewOrchestrator(Config{FailureLimit: 1})
			a, _ := o.Begin(keyA, 3, "echo", capable)
			r := newRecorder()
			tr := &fakeTransport{handle: handle}
			a.Start(t.Context(), tr, r.finish)
			if r.calls.Load() != 0 {
				t.Fatal("finish ran before the abandonment")
			}
			out := a.Abandon(ReasonTransferFailed, "backend control connection closed")
			if got := r.once(t); got != out {
				t.Fatalf("finish got %+v, Abandon returned %+v", got, out)
			}
			want := Outcome{Stage: StageAwaitAck, Reason: ReasonTransferFailed, Reached: true, Leaked: handle != 0,
				HandleValue: handle, Detail: "backend control connection closed"}
			if out != want {
				t.Fatalf("outcome %+v\n   want %+v", out, want)
			}
			if tr.reclaims.Load() != 0 {
				t.Fatal("reclaimed a handle the backend may hold")
			}
			assertClean(t, o, a.Token(), 3)
			if s := o.Stats(); s.Leaked != uint64(min(handle, 1)) || s.Reclaimed != 0 {
				t.Fatalf("stats %+v", s)
			}
			if d := o.policy.shouldAttempt(keyA, capable, time.Now()); d.Reason != ReasonRateLimited {
				t.Fatalf("a lost control connection is the backend's failure: %+v", d)
			}
		})
	}
}

// TestAbandonBeforeDeliverReclaims: an abandonment while Transfer runs lets
// Transfer finish, then takes back the handle it placed in the backend: the
// offer provably never reached it.
func TestAbandonBeforeDeliverReclaims(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 4, "echo", capable)
	tr := &fakeTransport{handle: 0x1a4}
	tr.onTransfer = func(of *Offer) {
		if out := a.Abandon(ReasonTransferFailed, "control connection closed"); out != (Outcome{}) {
			t.Errorf("Abandon during Transfer = %+v, want the zero Outcome", out)
		}
		if err := o.Ack(4, of.Token, true, "", time.Now()); !errors.Is(err, ErrNotPending) {
			t.Errorf("ACK during Transfer: %v", err)
		}
	}
	out := run(t.Context(), a, tr)
	want := Outcome{Stage: StageDeliver, Reason: ReasonTransferFailed, Reclaimed: true, HandleValue: 0x1a4, Detail: "control connection closed"}
	if out != want || tr.delivers.Load() != 0 || tr.reclaims.Load() != 1 {
		t.Fatalf("outcome %+v (delivers %d, reclaims %d)\n   want %+v", out, tr.delivers.Load(), tr.reclaims.Load(), want)
	}
	assertClean(t, o, a.Token(), 4)
	if s := o.Stats(); s.Reclaimed != 1 || s.Leaked != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// Abandoning an attempt before Start (the broker could not write
// Negotiated) ends it without calling the transport and without counting
// against the backend.
func TestAbandonBeforeStart(t *testing.T) {
	o := NewOrchestrator(Config{FailureLimit: 1})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	out := a.Abandon(ReasonTransferFailed, "write Negotiated: EPIPE")
	want := Outcome{Stage: StageTransfer, Reason: ReasonTransferFailed, Detail: "write Negotiated: EPIPE"}
	if out != want {
		t.Fatalf("Abandon = %+v", out)
	}
	if again := a.Abandon(ReasonCanceled, "x"); again != want {
		t.Fatalf("second Abandon = %+v", again)
	}
	tr := &fakeTransport{}
	if got := run(t.Context(), a, tr); got != want || tr.transfers.Load() != 0 {
		t.Fatalf("Start after Abandon = %+v", got)
	}
	assertClean(t, o, a.Token(), 1)
	if b, d := o.Begin(keyA, 2, "echo", capable); b == nil {
		t.Fatalf("Abandon before Start counted against the backend: %+v", d)
	}
	if s := o.Stats(); s.Fallback(StageTransfer, ReasonTransferFailed) != 1 {
		t.Errorf("stats %+v", s)
	}
	c, _ := o.Begin(keyA, 3, "echo", capable)
	if out := c.Abandon(ReasonNone, ""); out.Reason != ReasonCanceled || out.Stage != StageTransfer {
		t.Fatalf("Abandon(ReasonNone) = %+v, want canceled", out)
	}
}

func TestAttemptMisuse(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	tr := &fakeTransport{onDeliver: func(of *Offer) {
		r := newRecorder()
		a.Start(t.Context(), ackingTransport{o}, r.finish)
		if out := r.once(t); out.Reason != ReasonInternal {
			t.Errorf("concurrent Start = %+v", out)
		}
		o.Ack(1, of.Token, true, "", time.Now())
	}}
	if out := run(t.Context(), a, tr); !out.Completed {
		t.Fatalf("outcome %+v", out)
	}

	b, _ := o.Begin(keyA, 2, "echo", capable)
	if out := run(t.Context(), b, nil); out.Reason != ReasonInternal || out.Stage != StageTransfer {
		t.Fatalf("nil transport: %+v", out)
	}
	assertClean(t, o, b.Token(), 2)

	var nilA *Attempt
	if nilA.Token() != (Token{}) || nilA.ConnectionID() != 0 || !nilA.Deadline().IsZero() {
		t.Error("nil accessors")
	}
	if run(t.Context(), nilA, tr).Reason != ReasonInternal || nilA.Abandon(ReasonCanceled, "").Reason != ReasonInternal {
		t.Error("nil Start/Abandon")
	}
	if fmt.Sprint(nilA) != "<nil>" || nilA.LogValue().String() != "<nil>" {
		t.Error("nil Format/LogValue")
	}
	var nilO *Orchestrator
	if fmt.Sprint(nilO) != "<nil>" {
		t.Error("nil Orchestrator Format")
	}
}

func TestAttemptTransportPanicsRecovered(t *testing.T) {
	o := NewOrchestrator(Config{})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	tr := &fakeTransport{handle: 0x99, transferErr: errors.New("bad"), reclaimPanic: true}
	out := run(t.Context(), a, tr)
	if !out.Leaked || out.Reclaimed || !strings.Contains(out.Detail, "panicked") {
		t.Fatalf("reclaim panic: %+v", out)
	}
	assertClean(t, o, a.Token(), 1)
}

// The ACK deadline can already have passed when Deliver returns (a slow
// Deliver); Start then times out without arming a timer.
func TestAttemptDeadlinePassedDuringDeliver(t *testing.T) {
	clk := &manualClock{now: t0}
	o := NewOrchestrator(Config{Now: clk.Now})
	a, _ := o.Begin(keyA, 1, "echo", capable)
	tr := &fakeTransport{handle: 0x5, onDeliver: func(*Offer) { clk.Advance(defaultAckDeadline) }}
	r := newRecorder()
	a.Start(t.Context(), tr, r.finish)
	out := r.once(t)
	if out.Stage != StageAwaitAck || out.Reason != ReasonAckTimeout || !out.Leaked || !out.Reached {
		t.Fatalf("outcome %+v", out)
	}
	assertClean(t, o, a.Token(), 1)
}

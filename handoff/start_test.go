package handoff

import (
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder collects the outcomes Start hands to finish.
type recorder struct {
	calls atomic.Int32
	out   atomic.Pointer[Outcome]
}

func (r *recorder) finish(out Outcome) {
	r.calls.Add(1)
	r.out.Store(&out)
}

func (r *recorder) once(t *testing.T) Outcome {
	t.Helper()
	if n := r.calls.Load(); n != 1 {
		t.Fatalf("finish called %d times, want exactly once", n)
	}
	return *r.out.Load()
}

// TestStartAckLater: Start returns before the ACK; Ack's caller runs finish.
func TestStartAckLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, accepted := range []bool{true, false} {
			o := newTestOrchestrator(Config{})
			a, _ := o.Begin(keyA, 1, "echo", capable)
			var r recorder
			a.Start(&fakeTransport{}, r.finish)
			if r.calls.Load() != 0 {
				t.Fatal("finish ran before the ACK arrived")
			}
			if s := o.Stats(); s.InFlight != 1 {
				t.Fatalf("in flight %d while awaiting the ACK, want 1", s.InFlight)
			}
			time.Sleep(time.Second) // the bubble's clock: the backend takes a second
			if err := o.Ack(1, a.Token(), accepted, "no", time.Now()); err != nil {
				t.Fatal(err)
			}
			out := r.once(t)
			want := Outcome{Completed: true, Stage: StageAcknowledge, Reached: true}
			if !accepted {
				want = Outcome{Stage: StageAcknowledge, Reason: ReasonBackendRejected, Reached: true, Detail: "no"}
			}
			if out != want {
				t.Fatalf("outcome %+v, want %+v", out, want)
			}
			synctest.Wait() // the stopped expiry must not fire later
			assertClean(t, o, a.Token(), 1)
			if r.calls.Load() != 1 {
				t.Fatal("finish ran again")
			}
		}
	})
}

// TestStartExpires: without an ACK, finish runs at the ACK deadline.
func TestStartExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newTestOrchestrator(Config{AckDeadline: 3 * time.Second})
		a, _ := o.Begin(keyA, 2, "echo", capable)
		begun := time.Now()
		var r recorder
		a.Start(&fakeTransport{}, r.finish)
		time.Sleep(3*time.Second - time.Nanosecond)
		synctest.Wait()
		if r.calls.Load() != 0 {
			t.Fatal("finish ran before the ACK deadline")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		out := r.once(t)
		if out.Completed || out.Stage != StageAwaitAck || out.Reason != ReasonAckTimeout || !out.Reached {
			t.Fatalf("outcome %+v", out)
		}
		if d := time.Since(begun); d != 3*time.Second {
			t.Fatalf("expired after %v, want the 3 s deadline", d)
		}
		if err := o.Ack(2, a.Token(), true, "", time.Now()); !errors.Is(err, ErrNotPending) {
			t.Fatalf("late Ack: %v, want ErrNotPending", err)
		}
		assertClean(t, o, a.Token(), 2)
		if s := o.Stats(); s.Fallback(StageAwaitAck, ReasonAckTimeout) != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestStartInline: outcomes known when Deliver returns are reported on the
// caller's goroutine, before Start returns.
func TestStartInline(t *testing.T) {
	o := newTestOrchestrator(Config{})
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
			var r recorder
			a.Start(c.tr, r.finish)
			if out := r.once(t); !c.want(out) {
				t.Fatalf("outcome %+v", out)
			}
			assertClean(t, o, a.Token(), id)
			a.Start(c.tr, r.finish) // a finished attempt reports its outcome again
			if r.calls.Load() != 2 {
				t.Fatal("Start on a finished attempt did not report")
			}
		})
	}
	var r recorder
	(*Attempt)(nil).Start(nil, r.finish)
	if out := r.once(t); out.Reason != ReasonInternal {
		t.Fatalf("nil attempt: %+v", out)
	}
}

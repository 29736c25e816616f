package handoff

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestReasonAndStageNames(t *testing.T) {
	// These are metric labels: changing one is a breaking change.
	reasons := map[Reason]string{
		ReasonNone:              "none",
		ReasonClientUnsupported: "client_unsupported",
		ReasonPolicyDisabled:    "policy_disabled",
		ReasonBackendNotCapable: "backend_not_capable",
		ReasonFDPressure:        "fd_pressure",
		ReasonRateLimited:       "rate_limited",
		ReasonPermissionDenied:  "permission_denied",
		ReasonIntegrityMismatch: "integrity_mismatch",
		ReasonTransferFailed:    "transfer_failed",
		ReasonBackendRejected:   "backend_rejected",
		ReasonAckTimeout:        "ack_timeout",
		ReasonCanceled:          "canceled",
		ReasonInternal:          "internal_error",
	}
	if len(reasons) != int(numReasons) {
		t.Fatalf("test covers %d reasons, package has %d", len(reasons), numReasons)
	}
	for r, want := range reasons {
		if r.String() != want {
			t.Errorf("Reason %d = %q, want %q", int(r), r.String(), want)
		}
	}
	stages := map[Stage]string{
		StageDecide: "decide", StageTransfer: "transfer", StageDeliver: "deliver",
		StageAwaitAck: "await_ack", StageAcknowledge: "acknowledge",
	}
	if len(stages) != int(numStages) {
		t.Fatalf("test covers %d stages, package has %d", len(stages), numStages)
	}
	for s, want := range stages {
		if s.String() != want {
			t.Errorf("Stage %d = %q, want %q", int(s), s.String(), want)
		}
	}
	if Reason(-1).String() != "reason(-1)" || Reason(99).String() != "reason(99)" ||
		Stage(-1).String() != "stage(-1)" || Stage(7).String() != "stage(7)" {
		t.Error("out-of-range names")
	}
}

var capable = Inputs{ClientCapable: true, PolicyEnabled: true, BackendCapable: true}

func TestPolicyInputsOrder(t *testing.T) {
	p := NewPolicy(Config{})
	cases := []struct {
		in   Inputs
		want Reason
	}{
		{Inputs{}, ReasonClientUnsupported},
		{Inputs{ClientCapable: true, FDPressure: true}, ReasonPolicyDisabled},
		{Inputs{ClientCapable: true, PolicyEnabled: true, FDPressure: true}, ReasonBackendNotCapable},
		{Inputs{ClientCapable: true, PolicyEnabled: true, BackendCapable: true, FDPressure: true}, ReasonFDPressure},
		{capable, ReasonNone},
	}
	for _, c := range cases {
		d := p.ShouldAttempt(keyA, c.in, t0)
		if d.Reason != c.want || d.Attempt != (c.want == ReasonNone) || d.RetryAfter != 0 {
			t.Errorf("%+v: %+v, want %v", c.in, d, c.want)
		}
	}
}

func TestPolicyFailureWindow(t *testing.T) {
	w := 30 * time.Second
	p := NewPolicy(Config{FailureLimit: 3, FailureWindow: w})
	other := BackendKey{"other", "1"}
	p.RecordFailure(keyA, t0)
	p.RecordFailure(keyA, t0.Add(10*time.Second))
	if d := p.ShouldAttempt(keyA, capable, t0.Add(10*time.Second)); !d.Attempt {
		t.Fatalf("2 of 3 failures: %+v", d)
	}
	p.RecordFailure(keyA, t0.Add(20*time.Second))
	d := p.ShouldAttempt(keyA, capable, t0.Add(25*time.Second))
	if d.Attempt || d.Reason != ReasonRateLimited || d.RetryAfter != 5*time.Second {
		t.Fatalf("3 of 3 failures: %+v, want rate_limited retry 5s", d)
	}
	if d := p.ShouldAttempt(other, capable, t0.Add(25*time.Second)); !d.Attempt {
		t.Fatal("window leaked to another backend")
	}
	// Inputs still take precedence over the window.
	if d := p.ShouldAttempt(keyA, Inputs{}, t0.Add(25*time.Second)); d.Reason != ReasonClientUnsupported {
		t.Fatalf("%+v", d)
	}
	// The oldest failure leaves the window at t0+30s.
	if d := p.ShouldAttempt(keyA, capable, t0.Add(w)); !d.Attempt {
		t.Fatalf("after the window passed: %+v", d)
	}
	// One more failure fills it again, until the second failure ages out.
	p.RecordFailure(keyA, t0.Add(31*time.Second))
	d = p.ShouldAttempt(keyA, capable, t0.Add(32*time.Second))
	if d.Reason != ReasonRateLimited || d.RetryAfter != 8*time.Second {
		t.Fatalf("refilled window: %+v, want retry 8s", d)
	}
	p.RecordSuccess(keyA)
	if d := p.ShouldAttempt(keyA, capable, t0.Add(32*time.Second)); !d.Attempt {
		t.Fatalf("success did not reset the window: %+v", d)
	}
	// Stale windows are forgotten.
	p.RecordFailure(other, t0)
	p.ShouldAttempt(other, capable, t0.Add(w))
	p.mu.Lock()
	n := len(p.fails)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("%d stale windows kept", n)
	}
}

func TestPolicyDefaultsAndLimitOne(t *testing.T) {
	p := NewPolicy(Config{})
	for i := range DefaultFailureLimit - 1 {
		p.RecordFailure(keyA, t0.Add(time.Duration(i)*time.Second))
	}
	if d := p.ShouldAttempt(keyA, capable, t0.Add(10*time.Second)); !d.Attempt {
		t.Fatalf("%d failures: %+v", DefaultFailureLimit-1, d)
	}
	p.RecordFailure(keyA, t0.Add(10*time.Second))
	if d := p.ShouldAttempt(keyA, capable, t0.Add(10*time.Second)); d.RetryAfter != DefaultFailureWindow-10*time.Second {
		t.Fatalf("%d failures: %+v", DefaultFailureLimit, d)
	}
	p1 := NewPolicy(Config{FailureLimit: 1, FailureWindow: time.Second})
	p1.RecordFailure(keyA, t0)
	if d := p1.ShouldAttempt(keyA, capable, t0); d.Reason != ReasonRateLimited || d.RetryAfter != time.Second {
		t.Fatalf("limit 1: %+v", d)
	}
}

func TestPolicyBoundedBackends(t *testing.T) {
	p := NewPolicy(Config{FailureLimit: 1, FailureWindow: time.Second})
	for i := range maxTrackedBackends {
		p.RecordFailure(BackendKey{Service: fmt.Sprint(i)}, t0)
	}
	extra := BackendKey{Service: "extra"}
	p.RecordFailure(extra, t0)
	if d := p.ShouldAttempt(extra, capable, t0); !d.Attempt {
		t.Fatal("failure recorded beyond the tracking bound")
	}
	// Once the old windows are stale, the map makes room.
	p.RecordFailure(extra, t0.Add(time.Second))
	if d := p.ShouldAttempt(extra, capable, t0.Add(time.Second)); d.Reason != ReasonRateLimited {
		t.Fatalf("after pruning: %+v", d)
	}
}

func TestPolicyConcurrent(t *testing.T) {
	p := NewPolicy(Config{FailureLimit: 4})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			k := BackendKey{Service: fmt.Sprint(g % 2)}
			for i := range 500 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch i % 3 {
				case 0:
					p.RecordFailure(k, now)
				case 1:
					p.ShouldAttempt(k, capable, now)
				default:
					if i%30 == 2 {
						p.RecordSuccess(k)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(2)
	if l.Max() != 2 || !l.TryAcquire() || !l.TryAcquire() || l.TryAcquire() || l.InFlight() != 2 {
		t.Fatal("bound of 2 not enforced")
	}
	l.Release()
	if !l.TryAcquire() {
		t.Fatal("released slot not reusable")
	}
	l.Release()
	l.Release()
	l.Release() // unmatched: ignored
	if l.InFlight() != 0 {
		t.Fatalf("InFlight = %d", l.InFlight())
	}
	if NewLimiter(0).Max() != DefaultMaxInFlight || NewLimiter(-3).Max() != DefaultMaxInFlight {
		t.Error("default bound")
	}

	l = NewLimiter(10)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak := 0
	for range 50 {
		wg.Go(func() {
			for range 200 {
				if l.TryAcquire() {
					mu.Lock()
					peak = max(peak, l.InFlight())
					mu.Unlock()
					l.Release()
				}
			}
		})
	}
	wg.Wait()
	if peak > 10 || l.InFlight() != 0 {
		t.Fatalf("peak %d, final %d", peak, l.InFlight())
	}
}

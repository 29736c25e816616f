package handoff

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

var (
	keyA    = BackendKey{Service: "echo", Version: "1.2.0"}
	capable = Inputs{ClientCapable: true, PolicyEnabled: true, BackendCapable: true}
)

func TestPolicyInputsOrder(t *testing.T) {
	p := newPolicy(Config{})
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
		d := p.shouldAttempt(keyA, c.in, t0)
		if d.Reason != c.want || d.Attempt != (c.want == ReasonNone) || d.RetryAfter != 0 {
			t.Errorf("%+v: %+v, want %v", c.in, d, c.want)
		}
	}
}

func TestPolicyFailureWindow(t *testing.T) {
	w := 30 * time.Second
	p := newPolicy(Config{FailureLimit: 3, FailureWindow: w})
	other := BackendKey{Service: "other", Version: "1"}
	p.recordFailure(keyA, t0)
	p.recordFailure(keyA, t0.Add(10*time.Second))
	if d := p.shouldAttempt(keyA, capable, t0.Add(10*time.Second)); !d.Attempt {
		t.Fatalf("2 of 3 failures: %+v", d)
	}
	p.recordFailure(keyA, t0.Add(20*time.Second))
	d := p.shouldAttempt(keyA, capable, t0.Add(25*time.Second))
	if d.Attempt || d.Reason != ReasonRateLimited || d.RetryAfter != 5*time.Second {
		t.Fatalf("3 of 3 failures: %+v, want rate_limited retry 5s", d)
	}
	if d := p.shouldAttempt(other, capable, t0.Add(25*time.Second)); !d.Attempt {
		t.Fatal("window leaked to another backend")
	}
	// Inputs still take precedence over the window.
	if d := p.shouldAttempt(keyA, Inputs{}, t0.Add(25*time.Second)); d.Reason != ReasonClientUnsupported {
		t.Fatalf("%+v", d)
	}
	// The oldest failure leaves the window at t0+30s.
	if d := p.shouldAttempt(keyA, capable, t0.Add(w)); !d.Attempt {
		t.Fatalf("after the window passed: %+v", d)
	}
	// One more failure fills it again, until the second failure ages out.
	p.recordFailure(keyA, t0.Add(31*time.Second))
	d = p.shouldAttempt(keyA, capable, t0.Add(32*time.Second))
	if d.Reason != ReasonRateLimited || d.RetryAfter != 8*time.Second {
		t.Fatalf("refilled window: %+v, want retry 8s", d)
	}
	p.recordSuccess(keyA)
	if d := p.shouldAttempt(keyA, capable, t0.Add(32*time.Second)); !d.Attempt {
		t.Fatalf("success did not reset the window: %+v", d)
	}
	// Stale windows are forgotten.
	p.recordFailure(other, t0)
	p.shouldAttempt(other, capable, t0.Add(w))
	p.mu.Lock()
	n := len(p.fails)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("%d stale windows kept", n)
	}
}

// TestPolicyWindowPerProcess: the window belongs to one backend process. A
// new process of the same service and version starts with a clean window,
// and ForgetBackend drops a dead process's window at once.
func TestPolicyWindowPerProcess(t *testing.T) {
	o := NewOrchestrator(Config{FailureLimit: 2, FailureWindow: 30 * time.Second, Now: func() time.Time { return t0 }})
	p := o.policy
	dead := BackendKey{Service: "echo", Version: "1.2.0", PID: 100, StartTime: 7}
	p.recordFailure(dead, t0)
	p.recordFailure(dead, t0)
	if d := p.shouldAttempt(dead, capable, t0); d.Reason != ReasonRateLimited {
		t.Fatalf("the failing process: %+v, want rate_limited", d)
	}
	for _, fresh := range []BackendKey{
		{Service: "echo", Version: "1.2.0", PID: 101, StartTime: 9}, // a new process
		{Service: "echo", Version: "1.2.0", PID: 100, StartTime: 8}, // the pid reused
	} {
		if d := p.shouldAttempt(fresh, capable, t0); !d.Attempt {
			t.Errorf("%+v inherited the dead process's window: %+v", fresh, d)
		}
	}
	o.ForgetBackend(dead)
	p.mu.Lock()
	n := len(p.fails)
	p.mu.Unlock()
	if n != 0 {
		t.Errorf("%d windows kept after ForgetBackend", n)
	}
}

func TestPolicyDefaultsAndLimitOne(t *testing.T) {
	p := newPolicy(Config{})
	for i := range defaultFailureLimit - 1 {
		p.recordFailure(keyA, t0.Add(time.Duration(i)*time.Second))
	}
	if d := p.shouldAttempt(keyA, capable, t0.Add(10*time.Second)); !d.Attempt {
		t.Fatalf("%d failures: %+v", defaultFailureLimit-1, d)
	}
	p.recordFailure(keyA, t0.Add(10*time.Second))
	if d := p.shouldAttempt(keyA, capable, t0.Add(10*time.Second)); d.RetryAfter != defaultFailureWindow-10*time.Second {
		t.Fatalf("%d failures: %+v", defaultFailureLimit, d)
	}
	p1 := newPolicy(Config{FailureLimit: 1, FailureWindow: time.Second})
	p1.recordFailure(keyA, t0)
	if d := p1.shouldAttempt(keyA, capable, t0); d.Reason != ReasonRateLimited || d.RetryAfter != time.Second {
		t.Fatalf("limit 1: %+v", d)
	}
}

func TestPolicyBoundedBackends(t *testing.T) {
	p := newPolicy(Config{FailureLimit: 1, FailureWindow: time.Second})
	for i := range maxTrackedBackends {
		p.recordFailure(BackendKey{Service: fmt.Sprint(i)}, t0)
	}
	extra := BackendKey{Service: "extra"}
	p.recordFailure(extra, t0)
	if d := p.shouldAttempt(extra, capable, t0); !d.Attempt {
		t.Fatal("failure recorded beyond the tracking bound")
	}
	// Once the old windows are stale, the map makes room.
	p.recordFailure(extra, t0.Add(time.Second))
	if d := p.shouldAttempt(extra, capable, t0.Add(time.Second)); d.Reason != ReasonRateLimited {
		t.Fatalf("after pruning: %+v", d)
	}
}

func TestPolicyConcurrent(t *testing.T) {
	p := newPolicy(Config{FailureLimit: 4})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			k := BackendKey{Service: fmt.Sprint(g % 2)}
			for i := range 500 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch i % 3 {
				case 0:
					p.recordFailure(k, now)
				case 1:
					p.shouldAttempt(k, capable, now)
				default:
					if i%30 == 2 {
						p.recordSuccess(k)
					}
				}
			}
		})
	}
	wg.Wait()
}

package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portier/portier/client"
)

// smokeBound bounds a smoke run from the outside: Run must come back even
// when every attempt hangs. It detects a stuck harness, it measures nothing.
const smokeBound = 90 * time.Second

func runBounded(t *testing.T, cfg Config) *Report {
	t.Helper()
	return runBoundedCtx(t, context.Background(), cfg)
}

func runBoundedCtx(t *testing.T, ctx context.Context, cfg Config) *Report {
	t.Helper()
	cfg.Progress = testWriter{t}
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := Run(ctx, cfg)
		done <- result{rep, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("Run: %v", res.err)
		}
		var b bytes.Buffer
		if err := res.rep.WriteTable(&b); err != nil {
			t.Fatal(err)
		}
		t.Logf("\n%s", b.String())
		return res.rep
	case <-time.After(smokeBound):
		t.Fatalf("Run did not return within %s", smokeBound)
		return nil
	}
}

// failed returns the names of the checks that failed.
func failed(rep *Report) []string {
	var names []string
	for _, c := range rep.Violations() {
		names = append(names, c.Name)
	}
	return names
}

// TestSmokeDetects runs the harness, without chaos, against backends that
// are right and against ones that are wrong in one known way, and checks
// that each fault is classified as what it is and fails its check (and
// that the right backend fails none).
func TestSmokeDetects(t *testing.T) {
	t.Parallel()
	portier, backend := portierBinary(t), self(t)
	extra := []Service{{Name: "corrupt", Role: "corrupt"}, {Name: "silent", Role: "silent"}, {Name: "broken", Role: "exit"}}
	for _, tc := range []struct {
		name      string
		service   string
		hungAfter time.Duration
		// measured: the quiet points are measured (the healthy case
		// checks that nothing fails, descriptors included; the faults
		// need only the classification).
		measured bool
		check    func(t *testing.T, rep *Report)
	}{
		{"healthy echo", ServiceEcho, 0, true, func(t *testing.T, rep *Report) {
			c := rep.Clients
			if c.Correct == 0 || c.Correct != c.Attempted {
				t.Errorf("correct %d of %d attempts, want all (errors %v, samples %v)", c.Correct, c.Attempted, c.Errors, c.Samples)
			}
			if v := failed(rep); len(v) > 0 {
				t.Errorf("checks failed without any fault or chaos: %v", v)
			}
			if c.Routes["handoff"] == 0 || c.Routes["direct"] == 0 {
				t.Errorf("routes %v: want handoff (NoHelloSkip) and direct (the default fast path)", c.Routes)
			}
		}},
		{"corrupting backend", "corrupt", 0, false, func(t *testing.T, rep *Report) {
			c := rep.Clients
			if c.Corrupt == 0 || c.Corrupt != c.Attempted {
				t.Errorf("corrupt %d of %d attempts, want all (errors %v)", c.Corrupt, c.Attempted, c.Errors)
			}
			if s := c.Samples["corrupt"]; len(s) == 0 || !strings.Contains(s[0], "differs") {
				t.Errorf("corrupt samples %q, want the byte where the reply differs", s)
			}
			if v := failed(rep); !slices.Contains(v, "no corrupt reply") {
				t.Errorf("failed checks %v lack \"no corrupt reply\"", v)
			}
		}},
		{"silent backend", "silent", time.Second, false, func(t *testing.T, rep *Report) {
			c := rep.Clients
			if c.Hung == 0 || c.Hung != c.Attempted {
				t.Errorf("hung %d of %d attempts, want all (errors %v, samples %v)", c.Hung, c.Attempted, c.Errors, c.Samples)
			}
			if v := failed(rep); !slices.Contains(v, "no hung attempt") {
				t.Errorf("failed checks %v lack \"no hung attempt\"", v)
			}
		}},
		{"unknown service", "nosuch", 0, false, func(t *testing.T, rep *Report) {
			c := rep.Clients
			if n := c.Errors["refused: SERVICE_UNKNOWN"]; n == 0 || n != c.Attempted {
				t.Errorf("SERVICE_UNKNOWN refusals %d of %d attempts, want all (errors %v)", n, c.Attempted, c.Errors)
			}
		}},
		{"backend that cannot start", "broken", 0, false, func(t *testing.T, rep *Report) {
			// After a few failed starts the broker stops trying for a
			// while and says so.
			c := rep.Clients
			spawn, limited := c.Errors[KeySpawnFailed], c.Errors["refused: RATE_LIMITED"]
			if spawn == 0 || spawn+limited != c.Attempted {
				t.Errorf("%d %s and %d RATE_LIMITED of %d attempts, want only those (errors %v)", spawn, KeySpawnFailed, limited, c.Attempted, c.Errors)
			}
			if v := failed(rep); !slices.Contains(v, "no BACKEND_SPAWN_FAILED") {
				t.Errorf("failed checks %v lack \"no BACKEND_SPAWN_FAILED\"", v)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := runBounded(t, Config{
				Portier: portier, Backend: backend, Service: tc.service, Extra: extra,
				Duration: 500 * time.Millisecond, Clients: 2, HungAfter: tc.hungAfter,
				KillEvery: -1, RestartEvery: -1, LongLived: -1, Settle: -1,
				unmeasured: !tc.measured,
			})
			if rep.Clients.Attempted == 0 {
				t.Fatal("no attempt made")
			}
			tc.check(t, rep)
		})
	}
}

// TestSmokeChaos runs the real soak until it has killed a backend and
// restarted the broker both ways, and checks that the harness does what it
// says: clients are served through it all, both quiet points are measured
// and the report reads back from JSON. It asserts nothing about the
// broker's lifecycle (TestSoak does).
func TestSmokeChaos(t *testing.T) {
	t.Parallel()
	// The load ends once the chaos has happened (Duration is only an
	// upper bound), so a slow machine makes the test longer, not flaky.
	ctx, enough := context.WithCancel(context.Background())
	defer enough()
	var mu sync.Mutex
	seen := map[string]bool{}
	watch := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		seen[e] = true
		if seen["kill"] && seen["restart SIGTERM"] && seen["restart SIGKILL"] {
			enough()
		}
	}
	rep := runBoundedCtx(t, ctx, Config{
		Portier: portierBinary(t), Backend: self(t),
		Duration: time.Minute, Clients: 4, KillEvery: 300 * time.Millisecond,
		RestartEvery: 300 * time.Millisecond, LongLived: 1, LongLivedFor: 2 * time.Second, Settle: 500 * time.Millisecond,
		watch: watch,
	})
	if rep.BackendKills == 0 {
		t.Errorf("no backend killed (%d ticks skipped)", rep.KillsSkipped)
	}
	if rep.BrokerRestarts["SIGTERM"] == 0 || rep.BrokerRestarts["SIGKILL"] == 0 {
		t.Errorf("broker restarts %v, want both kinds", rep.BrokerRestarts)
	}
	if rep.BrokerDown <= 0 {
		t.Errorf("no time without a broker recorded after %v restarts", rep.BrokerRestarts)
	}
	if rep.Clients.Correct == 0 || rep.LongLived.Attempted == 0 {
		t.Errorf("correct %d, long-lived %d: the load did not run", rep.Clients.Correct, rep.LongLived.Attempted)
	}
	for name, q := range map[string]QuietPoint{"before": rep.Before, "after": rep.After} {
		if q.Broker.FDs <= 0 || q.Broker.FDKinds["socket"] == 0 || q.Broker.GoroutineSource == "" {
			t.Errorf("%s: broker sample %+v", name, q.Broker)
		}
		if q.Backends[ServiceEcho].FDs <= 0 || q.Backends[ServiceSteady].FDs <= 0 {
			t.Errorf("%s: backends %+v, want echo and steady measured", name, q.Backends)
		}
	}
	if rep.Before.Broker.PID == rep.After.Broker.PID {
		t.Errorf("the broker after the chaos is the first one (pid %d)", rep.Before.Broker.PID)
	}
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not read back: %v\n%s", err, b.String())
	}
	if !reflect.DeepEqual(back.Clients, rep.Clients) || back.Settings != rep.Settings || !reflect.DeepEqual(back.Checks(), rep.Checks()) {
		t.Errorf("JSON round trip changed the report:\n%s", b.String())
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestClassifyNoBroker: client.Dial's own error for a socket nobody
// listens on is classified as ErrBrokerUnavailable, which the timeline
// then judges.
func TestClassifyNoBroker(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "broker.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := client.Dial(ctx, ServiceEcho, client.Socket(sock))
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded without a broker")
	}
	k, key := classify(err, time.Since(start), 10*time.Second)
	if k != kindError || key != keyBrokerUnavailable {
		t.Fatalf("classify(%v) = %d %q, want %q", err, k, key, keyBrokerUnavailable)
	}
}

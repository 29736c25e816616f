package soak

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// Flags of TestSoak. Without -soak.duration (or $SOAK_DURATION) it is
// skipped, so `go test ./...` stays fast.
var (
	soakDuration     = flag.Duration("soak.duration", 0, "run TestSoak for this long (else $SOAK_DURATION; 0 skips it)")
	soakClients      = flag.Int("soak.clients", 0, "client goroutines (default 24)")
	soakKillEvery    = flag.Duration("soak.kill-every", 0, "SIGKILL the echo backend this often (default 2s; negative: never)")
	soakRestartEvery = flag.Duration("soak.restart-every", 0, "restart the broker this often, SIGTERM and SIGKILL alternating (default 10s; negative: never)")
	soakHungAfter    = flag.Duration("soak.hung-after", 0, "an attempt without an answer this long is hung (default 10s)")
	soakLongLived    = flag.Int("soak.long-lived", 0, "long-lived connections to steady (default 2; negative: none)")
	soakJSON         = flag.String("soak.json", "", "also write the report as JSON to this file ('-': standard output)")
	soakKeep         = flag.Bool("soak.keep", false, "keep the soak's directory (broker and backend logs) and print its path")
)

// TestSoak is the chaos soak (see the package documentation): it fails
// for every required result (and every further check) the broker does not
// meet, with the number of occurrences.
//
//	go test ./internal/soak -run TestSoak -soak.duration=60s -v
func TestSoak(t *testing.T) {
	d := *soakDuration
	if d == 0 {
		if env := os.Getenv("SOAK_DURATION"); env != "" {
			var err error
			if d, err = time.ParseDuration(env); err != nil {
				t.Fatalf("SOAK_DURATION=%q: %v", env, err)
			}
		}
	}
	if d <= 0 {
		t.Skip("the chaos soak runs with -soak.duration=60s (or SOAK_DURATION=60s)")
	}
	// ^C ends the load early and still reports.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, Config{
		Portier: portierBinary(t), Backend: self(t), Duration: d,
		Clients: *soakClients, KillEvery: *soakKillEvery, RestartEvery: *soakRestartEvery,
		HungAfter: *soakHungAfter, LongLived: *soakLongLived, KeepDir: *soakKeep,
		Progress: testWriter{t},
	})
	if rep != nil {
		if err := rep.WriteTable(os.Stdout); err != nil {
			t.Error(err)
		}
		if *soakJSON != "" {
			writeJSON(t, rep, *soakJSON)
		}
	}
	if err != nil {
		t.Fatalf("the soak could not run: %v", err)
	}
	for _, c := range rep.Violations() {
		kind := "further check"
		if c.Required {
			kind = "required result"
		}
		t.Errorf("%s not met: %s: %d occurrences %s", kind, c.Name, c.Count, c.Detail)
	}
}

func writeJSON(t *testing.T, rep *Report, path string) {
	t.Helper()
	if path == "-" {
		if err := rep.WriteJSON(os.Stdout); err != nil {
			t.Error(err)
		}
		return
	}
	f, err := os.Create(path)
	if err != nil {
		t.Error(err)
		return
	}
	if err := rep.WriteJSON(f); err != nil {
		t.Error(err)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

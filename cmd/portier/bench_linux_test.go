package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/portier/portier/internal/bench"
	"github.com/portier/portier/internal/fdcount"
)

// TestBenchEndToEnd runs a tiny bench (one round, few connections) with
// every phase: real broker, backend, proxy and client processes.
func TestBenchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker, backends and client processes")
	}
	// Every process the bench starts inherits this mark, so the check for
	// leftovers below sees this run's processes only (not those of another
	// test binary running a bench at the same time).
	mark := "CMD_PORTIER_BENCH_RUN=" + rand.Text()
	k, v, _ := strings.Cut(mark, "=")
	t.Setenv(k, v)
	fds := fdcount.Count(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"bench", "--json", "-q", "--rounds", "1", "--conns", "30", "--conns-c16", "64", "--conns-curve", "80",
		"--warmup", "16", "--stream", "100ms", "--cold", "1", "--herd", "8", "--rss-conns", "200", "--rss-procs", "2"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("bench exited %d: %s", code, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout.String())
	}
	// The keys the issue names, as numbers at ratios.<name>.
	var raw struct {
		Ratios map[string]float64 `json:"ratios"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"handoff_vs_reconnect_p50_c1", "handoff_vs_reconnect_p99_c1", "handoff_vs_direct_p50_c1",
		"handoff_vs_reconnect_conns_c16", "fastpath_vs_direct_p50_c1", "stream_handoff_vs_direct"} {
		if v, ok := raw.Ratios[k]; !ok || v <= 0 {
			t.Errorf("ratios.%s = %v, %v; want a positive number", k, v, ok)
		}
	}
	// Each strategy, the route its connections must take and the
	// concurrencies it is measured at.
	want := map[string]string{"direct": "direct", "handoff": "handoff", "reconnect": "reconnect", "fastpath": "direct",
		"proxy": "proxy", "handoff+early": "handoff", "reconnect+early": "reconnect"}
	curve := map[string]bool{"direct": true, "handoff": true, "reconnect": true, "fastpath": true}
	conns := map[int]int{1: 30, 4: 80, 16: 64, 64: 80}
	seen := map[string][]int{}
	for _, s := range rep.RTT {
		seen[s.Strategy] = append(seen[s.Strategy], s.Concurrency)
		n := conns[s.Concurrency]
		// At c=64 a handoff may be routed to reconnect when the
		// broker's in-flight bound is reached; that is a result, not a
		// failure of the bench.
		if got := s.Routes[want[s.Strategy]]; (got != n && !(s.Concurrency == 64 && s.Strategy == "handoff")) || s.Errors != 0 || sumRoutes(s.Routes) != n {
			t.Errorf("%s c=%d: routes %v, %d errors; want %d on the %s route", s.Strategy, s.Concurrency, s.Routes, s.Errors, n, want[s.Strategy])
		}
		if s.P50US.Median <= 0 || s.P50US.Median > s.P999US.Median || s.ConnsPerSec.Median <= 0 || s.CPUPerConnUS.Median <= 0 {
			t.Errorf("%s c=%d: implausible figures %+v", s.Strategy, s.Concurrency, s)
		}
		// Every process that served a connection switched context at
		// least once per connection or so, and read and wrote.
		for _, proc := range []string{"client", "backend", "total"} {
			c, ok := s.PerConnByProcess[proc]
			if !ok || c.CtxSwitches <= 0 || c.RWSyscalls <= 0 || math.Abs(c.CtxSwitches-(c.Voluntary+c.Nonvoluntary)) > 1e-9 {
				t.Errorf("%s c=%d: %s counts per connection %+v (present %v)", s.Strategy, s.Concurrency, proc, c, ok)
			}
		}
		if b := s.PerConnByProcess["broker"]; (s.Strategy == "handoff" || s.Strategy == "reconnect") && b.RWSyscalls <= 0 {
			t.Errorf("%s c=%d: the broker made %v read/write syscalls per connection", s.Strategy, s.Concurrency, b.RWSyscalls)
		}
	}
	for s := range want {
		wantConc := []int{1, 16}
		if curve[s] {
			wantConc = []int{1, 4, 16, 64}
		}
		if !slices.Equal(seen[s], wantConc) {
			t.Errorf("strategy %s has rows at c=%v, want %v", s, seen[s], wantConc)
		}
	}
	if len(rep.Curve) != 4 {
		t.Errorf("curve for %d strategies, want 4: %+v", len(rep.Curve), rep.Curve)
	}
	for _, c := range rep.Curve {
		if len(c.Points) != 4 || !curve[c.Strategy] {
			t.Errorf("curve %s: %+v", c.Strategy, c.Points)
		}
	}
	if len(rep.Stream) != 4 {
		t.Errorf("%d streaming rows, want 4", len(rep.Stream))
	}
	for _, s := range rep.Stream {
		if s.MBps.Median <= 0 {
			t.Errorf("stream %s: %v MB/s", s.Strategy, s.MBps.Median)
		}
	}
	if rep.Cold.Samples != 1 || rep.Cold.HelloToEchoMS.Median <= 0 || rep.Cold.ExecToListenMS.Median <= 0 {
		t.Errorf("cold start: %+v", rep.Cold)
	}
	if len(rep.Herd) != 1 || rep.Herd[0].Spawns != 1 || rep.Herd[0].Served != 8 {
		t.Errorf("herd: %+v", rep.Herd)
	}
	if rep.RSS.PendingConns != 200 || rep.RSS.Pending.FDs < 200 || rep.RSS.IdleStart.RSSKiB <= 0 {
		t.Errorf("rss: %+v", rep.RSS)
	}
	// The parked clients' descriptors are counted; whether the broker
	// lets go of them within the second is a result, not a test failure.
	if p := rep.Parked; p == nil || p.Clients != 200 || p.BaselineFDs <= 0 || p.PendingFDs < p.BaselineFDs+200 ||
		p.FDsAfter1s <= 0 || len(p.Samples) < 2 || p.Samples[len(p.Samples)-1].MS < 1000 {
		t.Errorf("parked close: %+v", p)
	}
	if len(rep.Targets) != 11 {
		t.Errorf("%d targets, want 11", len(rep.Targets))
	}

	// The tables render from the same report.
	var text, md bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"handoff_vs_reconnect_p50_c1", "Targets", "Cold start"} {
		if !strings.Contains(text.String(), s) || !strings.Contains(md.String(), s) {
			t.Errorf("text or markdown output lacks %q", s)
		}
	}
	// Everything the bench started is gone, and so is its directory.
	if left := bench.ProcsWithEnv(mark); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
	if n := fdcount.Count(t); n != fds {
		t.Errorf("descriptors: %d before, %d after", fds, n)
	}
}

func sumRoutes(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

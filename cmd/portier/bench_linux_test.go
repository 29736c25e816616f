package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/portier/portier/internal/bench"
)

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestBenchEndToEnd runs a tiny bench (one round, few connections) with
// every phase: real broker, backend, proxy and client processes.
func TestBenchEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker, backends and client processes")
	}
	fds := fdCount(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"bench", "--json", "-q", "--rounds", "1", "--conns", "30", "--conns-c16", "64",
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
		"handoff_vs_reconnect_conns_c16", "stream_handoff_vs_direct"} {
		if v, ok := raw.Ratios[k]; !ok || v <= 0 {
			t.Errorf("ratios.%s = %v, %v; want a positive number", k, v, ok)
		}
	}
	want := map[string]string{"direct": "direct", "handoff": "handoff", "reconnect": "reconnect", "proxy": "proxy",
		"handoff+early": "handoff", "reconnect+early": "reconnect"}
	seen := map[string]int{}
	for _, s := range rep.RTT {
		seen[s.Strategy]++
		n := 30
		if s.Concurrency == 16 {
			n = 64
		}
		if s.Routes[want[s.Strategy]] != n || s.Errors != 0 {
			t.Errorf("%s c=%d: routes %v, %d errors; want %d on the %s route", s.Strategy, s.Concurrency, s.Routes, s.Errors, n, want[s.Strategy])
		}
		if s.P50US.Median <= 0 || s.P50US.Median > s.P999US.Median || s.ConnsPerSec.Median <= 0 || s.CPUPerConnUS.Median <= 0 {
			t.Errorf("%s c=%d: implausible figures %+v", s.Strategy, s.Concurrency, s)
		}
	}
	for s := range want {
		if seen[s] != 2 {
			t.Errorf("strategy %s has %d rows, want 2 (c=1 and c=16)", s, seen[s])
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
	if len(rep.Targets) < 9 {
		t.Errorf("%d targets, want 9", len(rep.Targets))
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
	if left := bench.ProcsWithEnv(helperEnv + "=1"); len(left) > 0 {
		t.Errorf("processes left running: %v", left)
	}
	if n := fdCount(t); n != fds {
		t.Errorf("descriptors: %d before, %d after", fds, n)
	}
}

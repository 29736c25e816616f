package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden renderings in testdata")

// readFixture reads testdata/name as raw JSON and as a recomputed report.
func readFixture(t *testing.T, name string) (map[string]json.RawMessage, *Report) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]json.RawMessage
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReport(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return saved, rep
}

// TestReadReportKeepsSavedFigures: report-v1.json was written by `portier
// bench --json` before the bench moved into this package, report-v2.json by
// a tiny run of this one (with the fast path, the curve, the per-process
// counts and the parked clients). Recomputing their summaries from "raw"
// gives the figures they saved, key for key: the definitions of the ratios
// and summaries have not changed. Only v1's targets differ, because the
// targets have changed since.
func TestReadReportKeepsSavedFigures(t *testing.T) {
	for _, c := range []struct {
		fixture string
		keys    []string
		ratios  int
	}{
		{"report-v1.json", []string{"ratios", "ratio_ranges", "rtt", "stream", "cold_start", "herd", "broker_rss",
			"broker_counters", "warnings", "raw", "config", "machine"}, 14},
		{"report-v2.json", []string{"ratios", "ratio_ranges", "rtt", "curve", "stream", "cold_start", "herd", "broker_rss",
			"parked_close", "broker_counters", "targets", "warnings", "raw", "config", "machine"}, 15},
	} {
		saved, rep := readFixture(t, c.fixture)
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for _, k := range c.keys {
			if !jsonEqual(t, saved[k], got[k]) {
				t.Errorf("%s: %s differs after recomputation:\nsaved %s\n  got %s", c.fixture, k, saved[k], got[k])
			}
		}
		for k := range got {
			if _, ok := saved[k]; !ok {
				t.Errorf("%s: recomputation adds the key %s", c.fixture, k)
			}
		}
		if len(rep.Ratios) != c.ratios {
			t.Errorf("%s: %d ratios, want the %d the saved run has", c.fixture, len(rep.Ratios), c.ratios)
		}
	}
}

func jsonEqual(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// TestRenderGolden: the text and markdown tables of a saved run, byte for
// byte. Regenerate after an intended change with
// go test ./internal/bench -run TestRenderGolden -update.
func TestRenderGolden(t *testing.T) {
	_, v1 := readFixture(t, "report-v1.json")
	_, v2 := readFixture(t, "report-v2.json")
	text := func(r *Report, b *bytes.Buffer) error { return r.WriteText(b) }
	markdown := func(r *Report, b *bytes.Buffer) error { return r.WriteMarkdown(b) }
	for _, c := range []struct {
		golden string
		rep    *Report
		write  func(*Report, *bytes.Buffer) error
	}{
		{"report-v1.txt.golden", v1, text},
		{"report-v1.md.golden", v1, markdown},
		{"report-v2.txt.golden", v2, text},
		{"report-v2.md.golden", v2, markdown},
	} {
		rep := c.rep
		var b bytes.Buffer
		if err := c.write(rep, &b); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", c.golden)
		if *update {
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("%s: rendering differs (rerun with -update after an intended change)\n got:\n%s", c.golden, b.String())
		}
	}
}

// fakePhase is one round-trip phase of a synthetic report: latencies in µs.
type fakePhase struct {
	strategy   string
	conc       int
	p50, p99   [3]float64 // per round, µs
	cps        [3]float64
	cpuPerConn [3]float64 // ns
}

// syntheticReport is a three-round report with chosen figures, so that
// every ratio has a value per round that is known by hand.
func syntheticReport() *Report {
	r := &Report{Config: DefaultConfig()}
	r.Config.Rounds = 3
	ones := [3]float64{1, 1, 1}
	phases := []fakePhase{
		{strategy: stratDirect, conc: 1, p50: [3]float64{100, 200, 50}, p99: ones, cps: ones, cpuPerConn: ones},
		{strategy: stratHandoff, conc: 1, p50: [3]float64{200, 300, 150}, p99: [3]float64{900, 800, 1000}, cps: ones, cpuPerConn: ones},
		{strategy: stratReconnect, conc: 1, p50: [3]float64{250, 300, 100}, p99: [3]float64{1000, 1000, 800}, cps: ones, cpuPerConn: ones},
		{strategy: stratProxy, conc: 1, p50: [3]float64{400, 200, 100}, p99: ones, cps: ones, cpuPerConn: ones},
		{strategy: stratHandoffEarly, conc: 1, p50: [3]float64{100, 600, 450}, p99: ones, cps: ones, cpuPerConn: ones},
		{strategy: stratReconnectEarly, conc: 1, p50: [3]float64{200, 300, 300}, p99: ones, cps: ones, cpuPerConn: ones},
		{strategy: stratFastpath, conc: 1, p50: [3]float64{110, 180, 60}, p99: ones, cps: ones, cpuPerConn: ones},
		{strategy: stratHandoff, conc: 16, p50: [3]float64{1000, 1200, 900}, p99: ones, cps: [3]float64{8000, 9000, 10000}, cpuPerConn: [3]float64{130, 120, 100}},
		{strategy: stratReconnect, conc: 16, p50: [3]float64{500, 1000, 900}, p99: ones, cps: [3]float64{10000, 10000, 8000}, cpuPerConn: [3]float64{100, 100, 100}},
	}
	for _, f := range phases {
		for round := range 3 {
			routes := map[string]int{wantRoute(f.strategy): 100}
			r.Raw.RTT = append(r.Raw.RTT, RTTPhase{Round: round, Strategy: f.strategy, Concurrency: f.conc,
				Result:      RTTResult{N: 100, P50NS: int64(f.p50[round] * 1e3), P99NS: int64(f.p99[round] * 1e3), P999NS: int64(f.p99[round] * 1e3), Routes: routes},
				ConnsPerSec: f.cps[round], CPUPerConnNS: f.cpuPerConn[round],
				CPU: CPUSplit{Client: 100 * 1000, Broker: 100 * 2000, Backend: 100 * 3000}})
		}
	}
	for _, s := range []struct {
		strategy string
		mbps     [3]float64
	}{
		{stratDirect, [3]float64{1000, 2000, 1000}},
		{stratHandoff, [3]float64{1000, 1000, 1100}},
		{stratProxy, [3]float64{500, 1000, 600}},
		{stratReconnect, [3]float64{900, 2200, 1000}},
	} {
		for round := range 3 {
			r.Raw.Stream = append(r.Raw.Stream, StreamPhase{Round: round, Strategy: s.strategy, MBps: s.mbps[round],
				Result: StreamResult{Route: s.strategy, Written: 1e9, Read: 1e9}, CPU: CPUSplit{Client: 1e6}})
		}
	}
	return r
}

// wantRatios are syntheticReport's ratios, round by round, worked out by
// hand from its figures.
var wantRatios = map[string][]float64{
	"handoff_vs_reconnect_p50_c1":             {200.0 / 250, 300.0 / 300, 150.0 / 100},
	"handoff_vs_reconnect_p99_c1":             {0.9, 0.8, 1.25},
	"handoff_vs_direct_p50_c1":                {2, 1.5, 3},
	"handoff_vs_reconnect_conns_c16":          {0.8, 0.9, 1.25},
	"fastpath_vs_direct_p50_c1":               {1.1, 0.9, 1.2},
	"stream_handoff_vs_direct":                {1, 0.5, 1.1},
	"handoff_vs_reconnect_p50_c16":            {2, 1.2, 1},
	"handoff_vs_reconnect_cpu_c16":            {1.3, 1.2, 1},
	"handoff_vs_proxy_p50_c1":                 {0.5, 1.5, 1.5},
	"proxy_vs_direct_p50_c1":                  {4, 1, 2},
	"stream_proxy_vs_direct":                  {0.5, 0.5, 0.6},
	"stream_reconnect_vs_direct":              {0.9, 1.1, 1},
	"handoff_early_vs_reconnect_early_p50_c1": {0.5, 2, 1.5},
	"handoff_early_vs_handoff_p50_c1":         {0.5, 2, 3},
	"handoff_early_vs_direct_p50_c1":          {1, 3, 9},
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestSummarizeRatios(t *testing.T) {
	r := syntheticReport()
	r.Summarize()
	if len(r.Ratios) != len(wantRatios) || len(r.RatioRanges) != len(wantRatios) {
		t.Errorf("%d ratios and %d ranges, want %d: %v", len(r.Ratios), len(r.RatioRanges), len(wantRatios), slices.Sorted(maps.Keys(r.Ratios)))
	}
	for name, vals := range wantRatios {
		rs, ok := r.RatioRanges[name]
		if !ok {
			t.Errorf("%s: missing", name)
			continue
		}
		s := slices.Sorted(slices.Values(vals))
		if !near(r.Ratios[name], s[1]) || !near(rs.Median, s[1]) || !near(rs.Min, s[0]) || !near(rs.Max, s[2]) {
			t.Errorf("%s = %v, range %v–%v (median %v); want median %v, range %v–%v", name, r.Ratios[name], rs.Min, rs.Max, rs.Median, s[1], s[0], s[2])
		}
		if len(rs.Values) != 3 {
			t.Errorf("%s: values %v, want one per round", name, rs.Values)
			continue
		}
		for i := range vals {
			if !near(rs.Values[i], vals[i]) {
				t.Errorf("%s: round %d = %v, want %v", name, i, rs.Values[i], vals[i])
			}
		}
	}
}

// TestSummarizeMissingRounds: a round that lacks one side of a ratio is
// left out of that ratio; a report without early rows has no early ratios.
func TestSummarizeMissingRounds(t *testing.T) {
	r := syntheticReport()
	r.Raw.RTT = slices.DeleteFunc(r.Raw.RTT, func(p RTTPhase) bool {
		return p.Strategy == stratReconnect && p.Concurrency == 1 && p.Round == 1
	})
	r.Config.Early = false
	r.Summarize()
	if got := r.RatioRanges["handoff_vs_reconnect_p50_c1"].Values; !slices.Equal(got, []float64{0.8, 1.5}) {
		t.Errorf("handoff_vs_reconnect_p50_c1 values %v, want rounds 1 and 3 only: [0.8 1.5]", got)
	}
	if m := r.Ratios["handoff_vs_reconnect_p50_c1"]; !near(m, 1.15) {
		t.Errorf("median of two rounds = %v, want their mean 1.15", m)
	}
	for name := range r.Ratios {
		if strings.Contains(name, "early") {
			t.Errorf("ratio %s without early rows", name)
		}
	}
}

func TestSummarizeRows(t *testing.T) {
	r := syntheticReport()
	r.Raw.RTT[0].Result.Errors = 3
	r.Raw.RTT[3].Result.Routes = map[string]int{"handoff": 90, "reconnect": 10} // a handoff c=1 round
	r.Raw.RTT[6*3+1].Result.Routes = map[string]int{"direct": 99, "handoff": 1} // a fastpath round
	r.BrokerCounters = map[string]float64{
		`portier_hellos_total{outcome="handoff",reason=""}`:                          10,
		`portier_hellos_total{outcome="reconnect",reason="client_unsupported"}`:      5,
		`portier_hellos_total{outcome="handoff_fallback",reason="backend_rejected"}`: 2,
	}
	r.Summarize()
	var order []string
	for _, s := range r.RTT {
		order = append(order, s.Strategy+"/"+strconv.Itoa(s.Concurrency))
	}
	if want := []string{"direct/1", "handoff/1", "handoff/16", "reconnect/1", "reconnect/16", "fastpath/1", "proxy/1", "handoff+early/1", "reconnect+early/1"}; !slices.Equal(order, want) {
		t.Errorf("rows %v, want %v", order, want)
	}
	h := r.RTT[1]
	if !near(h.P50US.Median, 200) || !near(h.P50US.Min, 150) || !near(h.P50US.Max, 300) || !near(h.P99US.Median, 900) {
		t.Errorf("handoff c=1 p50 %+v p99 %+v", h.P50US, h.P99US)
	}
	if h.CPUByProcessUS["client"] != 1 || h.CPUByProcessUS["broker"] != 2 || h.CPUByProcessUS["backend"] != 3 || h.CPUByProcessUS["proxy"] != 0 {
		t.Errorf("CPU by process %v, want client 1, broker 2, backend 3, proxy 0 µs", h.CPUByProcessUS)
	}
	if h.Routes["handoff"] != 290 || h.Routes["reconnect"] != 10 {
		t.Errorf("handoff routes %v", h.Routes)
	}
	if len(r.Stream) != 4 || r.Stream[0].Strategy != stratDirect || !near(r.Stream[0].MBps.Median, 1000) || !near(r.Stream[0].CPUPerMB.Median, 1) {
		t.Errorf("stream rows %+v", r.Stream)
	}
	if r.Raw.RTT[6*3+1].Strategy != stratFastpath {
		t.Fatalf("phase %d is %s", 6*3+1, r.Raw.RTT[6*3+1].Strategy)
	}
	wantWarn := []string{"direct c=1: 3 connections failed", "handoff c=1: not every connection took the handoff route",
		"fastpath c=1: not every connection took the direct route",
		`reason="backend_rejected"} 2`}
	if len(r.Warnings) != len(wantWarn) {
		t.Errorf("warnings %q, want %d", r.Warnings, len(wantWarn))
	}
	for _, w := range wantWarn {
		if !slices.ContainsFunc(r.Warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("no warning says %q: %q", w, r.Warnings)
		}
	}
	for _, w := range r.Warnings {
		if strings.Contains(w, "client_unsupported") || strings.Contains(w, `outcome="handoff",`) {
			t.Errorf("a warning names Hellos that were handed off or did not ask for it: %q", w)
		}
	}
	// Summarize replaces what an earlier call computed.
	r.Summarize()
	if len(r.RTT) != len(order) || len(r.Warnings) != len(wantWarn) {
		t.Errorf("a second Summarize gives %d rows and %d warnings", len(r.RTT), len(r.Warnings))
	}
}

func TestTargets(t *testing.T) {
	r := syntheticReport()
	r.Parked = &ParkedClose{Clients: 10, BaselineFDs: 20, PendingFDs: 30, FDsAfter1s: 23}
	r.Raw.Cold = []ColdSample{{HelloToEchoNS: 12e6, ExecToListenNS: 5e6, Route: "handoff"}, {HelloToEchoNS: 8e6, ExecToListenNS: 6e6, Route: "handoff"}}
	r.Herd = []HerdSample{{Spawns: 1}, {Spawns: 2}}
	r.RSS = RSSResult{IdleStart: ProcMem{RSSKiB: 10 << 10}, IdleAfterLoad: ProcMem{RSSKiB: 30 << 10}, PendingConns: 10, Pending: ProcMem{RSSKiB: 40 << 10}}
	r.Summarize()
	got := map[string]TargetResult{}
	for _, tr := range r.Targets {
		got[tr.Name] = tr
	}
	for _, c := range []struct {
		name       string
		measured   float64
		met        bool
		stretch    float64
		stretchMet bool
	}{
		{"handoff_vs_reconnect_p50_c1", 1.0, false, 0.75, false},
		{"handoff_vs_reconnect_p99_c1", 0.9, false, 0, false},
		{"handoff_vs_direct_p50_c1", 2.0, true, 0, false},
		{"handoff_vs_reconnect_conns_c16", 0.9, false, 1.1, false},
		{"fastpath_vs_direct_p50_c1", 1.1, true, 0, false},
		{"stream_handoff_vs_direct", 1.0, true, 0, false},
		{"cold_start_overhead_ms", 10 - 5.5, true, 0, false},
		{"herd_spawns", 2, false, 0, false},
		{"broker_rss_idle_mib", 30, false, 0, false},
		{"broker_rss_pending_mib", 40, true, 0, false},
		{"broker_parked_fds_after_1s", 3, false, 0, false},
	} {
		tr, ok := got[c.name]
		if !ok {
			t.Errorf("no target %s", c.name)
			continue
		}
		if !near(tr.Measured, c.measured) || tr.Met != c.met || tr.Stretch != c.stretch || tr.StretchMet != c.stretchMet {
			t.Errorf("%s: measured %v, met %v, stretch %v met %v; want %v, %v, %v, %v", c.name, tr.Measured, tr.Met, tr.Stretch, tr.StretchMet,
				c.measured, c.met, c.stretch, c.stretchMet)
		}
	}
	if len(got) != 11 {
		t.Errorf("%d targets, want 11", len(got))
	}

	// Back at the baseline is met; one descriptor more is not.
	for fds, wantMet := range map[int]bool{20: true, 19: true, 21: false} {
		r := &Report{Parked: &ParkedClose{Clients: 10, BaselineFDs: 20, FDsAfter1s: fds}}
		r.targets()
		if i := slices.IndexFunc(r.Targets, func(t TargetResult) bool { return t.Name == "broker_parked_fds_after_1s" }); i < 0 || r.Targets[i].Met != wantMet {
			t.Errorf("parked clients with %d fds at +1 s against a baseline of 20: %+v, want met %v", fds, r.Targets, wantMet)
		}
	}

	// The limits sit where the issue puts them: at the limit is met, past
	// it is not; the stretch limits likewise.
	for _, c := range []struct {
		name               string
		at, past           float64
		stretchAt, stretch float64
	}{
		{"handoff_vs_reconnect_p50_c1", 0.85, 0.86, 0.75, 0.76},
		{"handoff_vs_reconnect_p99_c1", 0.85, 0.86, 0, 0},
		{"handoff_vs_direct_p50_c1", 2.0, 2.01, 0, 0},
		{"handoff_vs_reconnect_conns_c16", 1.0, 0.99, 1.1, 1.09},
		{"fastpath_vs_direct_p50_c1", 1.15, 1.16, 0, 0},
		{"stream_handoff_vs_direct", 0.95, 0.94, 0, 0},
	} {
		for _, v := range []float64{c.at, c.past, c.stretchAt, c.stretch} {
			if v == 0 {
				continue
			}
			r := &Report{RatioRanges: map[string]RangeStat{c.name: {Median: v, Min: v, Max: v, Values: []float64{v}}}}
			r.targets()
			tr := r.Targets[0]
			if tr.Name != c.name {
				t.Fatalf("target %s, want %s", tr.Name, c.name)
			}
			if wantMet := v != c.past; tr.Met != wantMet {
				t.Errorf("%s at %v: met %v, want %v", c.name, v, tr.Met, wantMet)
			}
			if c.stretchAt != 0 {
				if wantStretch := v == c.stretchAt; tr.StretchMet != wantStretch {
					t.Errorf("%s at %v: stretch met %v, want %v", c.name, v, tr.StretchMet, wantStretch)
				}
			}
		}
	}
}

// TestSummarizeCurveAndCounts: the curve lists the strategies measured at
// more than two concurrencies, in order; the per-connection counts are the
// medians of each round's counts over its connections, per process and in
// total.
func TestSummarizeCurveAndCounts(t *testing.T) {
	r := syntheticReport()
	counts := func(client, broker int64) map[string]ProcCounts {
		return map[string]ProcCounts{
			"client":  {VoluntaryCS: client, NonvoluntaryCS: 100, SysR: 300, SysW: 200},
			"broker":  {VoluntaryCS: broker, SysR: 100},
			"backend": {VoluntaryCS: 200, NonvoluntaryCS: 50, SysR: 300, SysW: 300},
			"proxy":   {},
		}
	}
	for _, conc := range []int{64, 4} { // out of order on purpose
		for round := range 3 {
			r.Raw.RTT = append(r.Raw.RTT, RTTPhase{Round: round, Strategy: stratHandoff, Concurrency: conc,
				Result:      RTTResult{N: 100, P50NS: int64(conc * 1000 * (round + 1)), P99NS: int64(conc * 2000), Routes: map[string]int{"handoff": 100}},
				ConnsPerSec: float64(conc * 100 * (round + 1)),
				Counts:      counts(int64(100*(round+1)), int64(conc))})
		}
	}
	r.Summarize()
	if len(r.Curve) != 1 || r.Curve[0].Strategy != stratHandoff {
		t.Fatalf("curve %+v, want handoff only", r.Curve)
	}
	var levels []int
	for _, p := range r.Curve[0].Points {
		levels = append(levels, p.Concurrency)
	}
	if !slices.Equal(levels, []int{1, 4, 16, 64}) {
		t.Errorf("curve levels %v, want 1 4 16 64", levels)
	}
	p4 := r.Curve[0].Points[1]
	if !near(p4.ConnsPerSec, 800) || !near(p4.P50US, 8) || !near(p4.P99US, 8) {
		t.Errorf("c=4 point %+v, want 800 conns/s (median of 400, 800, 1200), p50 8 µs, p99 8 µs", p4)
	}
	p1 := r.Curve[0].Points[0]
	if !near(p1.P50US, 200) || !near(p1.ConnsPerSec, 1) {
		t.Errorf("c=1 point %+v, want the handoff c=1 row's medians", p1)
	}
	var row *RTTSummary
	for i := range r.RTT {
		if r.RTT[i].Strategy == stratHandoff && r.RTT[i].Concurrency == 64 {
			row = &r.RTT[i]
		}
		if r.RTT[i].Concurrency == 1 && r.RTT[i].PerConnByProcess != nil {
			t.Errorf("%s c=1 has counts %v but its phases have none", r.RTT[i].Strategy, r.RTT[i].PerConnByProcess)
		}
	}
	if row == nil {
		t.Fatal("no handoff c=64 row")
	}
	pc := row.PerConnByProcess
	// Client voluntary switches per round: 100, 200, 300 over 100
	// connections; nonvoluntary 100 each round.
	if c := pc["client"]; !near(c.Voluntary, 2) || !near(c.Nonvoluntary, 1) || !near(c.CtxSwitches, 3) || !near(c.SysR, 3) || !near(c.SysW, 2) || !near(c.RWSyscalls, 5) {
		t.Errorf("client per connection %+v", c)
	}
	if c := pc["broker"]; !near(c.CtxSwitches, 0.64) || !near(c.RWSyscalls, 1) {
		t.Errorf("broker per connection %+v", c)
	}
	// Total, round 2: client 200+100, broker 64, backend 250 switches;
	// 500 + 100 + 600 read/write syscalls; over 100 connections.
	if c := pc["total"]; !near(c.CtxSwitches, (300+64+250)/100.0) || !near(c.RWSyscalls, 12) || !near(c.Voluntary, (200+64+200)/100.0) {
		t.Errorf("total per connection %+v", c)
	}
	if c, ok := pc["proxy"]; !ok || c != (ConnCounts{}) {
		t.Errorf("proxy per connection %+v (present %v), want zeros", c, ok)
	}
}

// TestRenderNewSections: the curve, counts, parked and stretch renderings
// of a synthetic report, in both formats.
func TestRenderNewSections(t *testing.T) {
	r := syntheticReport()
	for _, conc := range []int{4, 64} {
		for round := range 3 {
			r.Raw.RTT = append(r.Raw.RTT, RTTPhase{Round: round, Strategy: stratFastpath, Concurrency: conc,
				Result:      RTTResult{N: 10, P50NS: 12_300, P99NS: 45_600, Routes: map[string]int{"direct": 10}},
				ConnsPerSec: 7890, Counts: map[string]ProcCounts{"client": {VoluntaryCS: 25, SysR: 30, SysW: 10}}})
		}
	}
	r.Config.ConnsCurve = 10
	// handoff / reconnect p50 at c=1: 0.8, 0.8, 1.5; met, stretch missed.
	for i, p := range r.Raw.RTT {
		if p.Strategy == stratReconnect && p.Concurrency == 1 && p.Round == 1 {
			r.Raw.RTT[i].Result.P50NS = 375_000
		}
	}
	r.Parked = &ParkedClose{Clients: 500, IdleFDs: 14, BaselineFDs: 16, PendingFDs: 516, FDsAfter1s: 16, BackToBaselineMS: 42.4, Method: "the method"}
	r.Summarize()
	var text, md bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Concurrency curve: conns/s, p50 / p99 µs, median of 3 rounds",
		"7890/s, 12.3 / 45.6",
		"Context switches / read+write syscalls per connection by process",
		"2.5 / 4.0", // the fast path's client: 25 switches, 40 syscalls over 10 connections
		"10 at the curve's other levels",
		"fastpath: client.Dial with the default options",
		"Broker descriptors after 500 parked clients close",
		"42 ms after the last client exited",
		"broker fds back to idle within 1 s after 500 parked clients close",
		"met (stretch 0.75 missed)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
		if !strings.Contains(md.String(), strings.ReplaceAll(want, "|", `\|`)) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	if !strings.Contains(md.String(), "| fastpath | 64 | 2.5 / 4.0 | 0.0 / 0.0 |") {
		t.Errorf("markdown lacks the fast path's c=64 counts row:\n%s", md.String())
	}
	r.Parked.BackToBaselineMS = -1
	text.Reset()
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "not within 1s") {
		t.Errorf("a broker that did not get back to its baseline reads:\n%s", text.String())
	}
}

package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
)

// Report is everything a run measured: summaries first, the raw per-phase
// figures under "raw". Its JSON encoding is what `portier bench --json`
// prints; Summarize derives everything but Raw, Herd, RSS and
// BrokerCounters from the raw figures.
type Report struct {
	Command   string      `json:"command"`
	StartedAt string      `json:"started_at"`
	DurationS float64     `json:"duration_s"`
	Machine   MachineInfo `json:"machine"`
	Config    Config      `json:"config"`

	// Ratios are the per-round ratios' medians; RatioRanges adds min, max
	// and every round's value.
	Ratios      map[string]float64   `json:"ratios"`
	RatioRanges map[string]RangeStat `json:"ratio_ranges"`

	RTT []RTTSummary `json:"rtt"`
	// Curve is conns/s, p50 and p99 of the curve strategies at every
	// concurrency they were measured at (the same figures as their RTT
	// rows, medians only).
	Curve  []CurveSummary  `json:"curve,omitempty"`
	Stream []StreamSummary `json:"stream"`
	Cold   ColdSummary     `json:"cold_start"`
	Herd   []HerdSample    `json:"herd"`
	RSS    RSSResult       `json:"broker_rss"`
	// Parked is how soon the broker lets go of the descriptors of parked
	// Hellos whose clients left (measured with the memory phase).
	Parked *ParkedClose `json:"parked_close,omitempty"`
	// BrokerCounters are the broker's route, handoff and spawn counters
	// after the load phases (before the memory phase), for fallback reasons.
	BrokerCounters map[string]float64 `json:"broker_counters"`
	Targets        []TargetResult     `json:"targets"`
	Warnings       []string           `json:"warnings,omitempty"`

	Raw struct {
		RTT    []RTTPhase    `json:"rtt"`
		Stream []StreamPhase `json:"stream"`
		Cold   []ColdSample  `json:"cold"`
	} `json:"raw"`
}

// ReadReport reads a report saved by `portier bench --json` and recomputes
// its summaries from the raw figures, so a saved run renders with this
// binary's definitions.
func ReadReport(r io.Reader) (*Report, error) {
	rep := new(Report)
	if err := json.NewDecoder(r).Decode(rep); err != nil {
		return nil, fmt.Errorf("read bench report: %w", err)
	}
	rep.Summarize()
	return rep, nil
}

// RTTSummary is one strategy at one concurrency over all rounds.
type RTTSummary struct {
	Strategy     string    `json:"strategy"`
	Concurrency  int       `json:"concurrency"`
	P50US        RangeStat `json:"p50_us"`
	P99US        RangeStat `json:"p99_us"`
	P999US       RangeStat `json:"p999_us"`
	ConnsPerSec  RangeStat `json:"conns_per_s"`
	CPUPerConnUS RangeStat `json:"cpu_per_conn_us"`
	// CPUByProcessUS is the median over rounds of each process's CPU per
	// connection.
	CPUByProcessUS map[string]float64 `json:"cpu_per_conn_by_process_us"`
	// OtherCPUPct: CPU used by processes outside the bench during the
	// phases, in percent of all CPUs.
	OtherCPUPct RangeStat      `json:"other_cpu_pct"`
	Routes      map[string]int `json:"routes"`
	Errors      int            `json:"errors"`
	Fallbacks   uint64         `json:"broker_fallbacks"`
	// PerConnByProcess is each process's context switches and read/write
	// syscalls per connection (medians over rounds), by process name and
	// "total" (their sum).
	PerConnByProcess map[string]ConnCounts `json:"per_conn_by_process,omitempty"`
}

// ConnCounts are ProcCounts per connection, each field the median over
// rounds.
type ConnCounts struct {
	CtxSwitches  float64 `json:"ctxt_switches"` // voluntary + nonvoluntary
	Voluntary    float64 `json:"voluntary_ctxt_switches"`
	Nonvoluntary float64 `json:"nonvoluntary_ctxt_switches"`
	RWSyscalls   float64 `json:"rw_syscalls"` // syscr + syscw
	SysR         float64 `json:"syscr"`
	SysW         float64 `json:"syscw"`
}

// CurveSummary is one strategy's connection setup over the concurrency
// curve.
type CurveSummary struct {
	Strategy string       `json:"strategy"`
	Points   []CurvePoint `json:"points"`
}

// CurvePoint is one concurrency of a curve: medians over rounds.
type CurvePoint struct {
	Concurrency int     `json:"concurrency"`
	ConnsPerSec float64 `json:"conns_per_s"`
	P50US       float64 `json:"p50_us"`
	P99US       float64 `json:"p99_us"`
}

// StreamSummary is one strategy's streaming over all rounds.
type StreamSummary struct {
	Strategy string    `json:"strategy"`
	MBps     RangeStat `json:"mb_per_s"`
	CPUPerMB RangeStat `json:"cpu_us_per_mb"`
	Route    string    `json:"route"`
}

// ColdSummary is the cold-start figures over every sample.
type ColdSummary struct {
	Samples        int            `json:"samples"`
	HelloToEchoMS  RangeStat      `json:"hello_to_echo_ms"`
	ExecToListenMS RangeStat      `json:"exec_to_listening_ms"`
	ExecToEchoMS   RangeStat      `json:"exec_to_echo_ms"`
	OverheadMS     float64        `json:"overhead_ms"` // median Hello→echo minus median exec→listening
	Routes         map[string]int `json:"routes"`
}

// TargetResult is one of the targets against what was measured.
type TargetResult struct {
	Name     string  `json:"name"`
	Rule     string  `json:"rule"`
	Op       string  `json:"op"`
	Limit    float64 `json:"limit"`
	Measured float64 `json:"measured"`
	Spread   string  `json:"spread,omitempty"`
	Met      bool    `json:"met"`
	// Stretch is a harder limit the target also names (0: none).
	Stretch    float64 `json:"stretch,omitempty"`
	StretchMet bool    `json:"stretch_met,omitempty"`
}

type rttKey struct {
	strategy string
	conc     int
	round    int
}

// ratioDef is a ratio computed per round.
type ratioDef struct {
	name, meaning string
	f             func(round int) (float64, bool)
}

// Summarize computes the summaries, ratios, targets and warnings from the
// raw phases, replacing any computed before.
func (r *Report) Summarize() {
	r.RTT, r.Curve, r.Stream, r.Cold, r.Targets, r.Warnings = nil, nil, nil, ColdSummary{}, nil, nil
	rtt := map[rttKey]RTTPhase{}
	var strategies []string
	concs := map[string][]int{} // by strategy, ascending
	for _, p := range r.Raw.RTT {
		rtt[rttKey{p.Strategy, p.Concurrency, p.Round}] = p
		if !slices.Contains(strategies, p.Strategy) {
			strategies = append(strategies, p.Strategy)
		}
		if !slices.Contains(concs[p.Strategy], p.Concurrency) {
			concs[p.Strategy] = append(concs[p.Strategy], p.Concurrency)
			slices.Sort(concs[p.Strategy])
		}
	}
	sort.SliceStable(strategies, func(i, j int) bool {
		return slices.Index(strategyOrder, strategies[i]) < slices.Index(strategyOrder, strategies[j])
	})
	for _, s := range strategies {
		var curve CurveSummary
		for _, conc := range concs[s] {
			sum := RTTSummary{Strategy: s, Concurrency: conc, Routes: map[string]int{}, CPUByProcessUS: map[string]float64{}}
			var p50, p99, p999, cps, cpu, other []float64
			by := map[string][]float64{}
			var counts []map[string]ProcCounts // rounds that have them
			var countN []float64
			for round := range r.Config.Rounds {
				p, ok := rtt[rttKey{s, conc, round}]
				if !ok {
					continue
				}
				n := float64(p.Result.N)
				if p.Counts != nil {
					counts, countN = append(counts, p.Counts), append(countN, n)
				}
				p50 = append(p50, float64(p.Result.P50NS)/1e3)
				p99 = append(p99, float64(p.Result.P99NS)/1e3)
				p999 = append(p999, float64(p.Result.P999NS)/1e3)
				cps = append(cps, p.ConnsPerSec)
				cpu = append(cpu, p.CPUPerConnNS/1e3)
				other = append(other, p.CPU.OtherPct)
				by["client"] = append(by["client"], float64(p.CPU.Client)/n/1e3)
				by["broker"] = append(by["broker"], float64(p.CPU.Broker)/n/1e3)
				by["backend"] = append(by["backend"], float64(p.CPU.Backend)/n/1e3)
				by["proxy"] = append(by["proxy"], float64(p.CPU.Proxy)/n/1e3)
				for k, v := range p.Result.Routes {
					sum.Routes[k] += v
				}
				sum.Errors += p.Result.Errors
				sum.Fallbacks += p.Fallbacks
			}
			if len(p50) == 0 {
				continue
			}
			sum.P50US, sum.P99US, sum.P999US = newRange(p50), newRange(p99), newRange(p999)
			sum.ConnsPerSec, sum.CPUPerConnUS, sum.OtherCPUPct = newRange(cps), newRange(cpu), newRange(other)
			for k, v := range by {
				sum.CPUByProcessUS[k] = newRange(v).Median
			}
			sum.PerConnByProcess = perConn(counts, countN)
			r.RTT = append(r.RTT, sum)
			curve.Points = append(curve.Points, CurvePoint{Concurrency: conc, ConnsPerSec: sum.ConnsPerSec.Median,
				P50US: sum.P50US.Median, P99US: sum.P99US.Median})
			if sum.Errors > 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s c=%d: %d connections failed and are not in the latency figures", s, conc, sum.Errors))
			}
			// Direct and proxy report their strategy as the route; the
			// others report what the client saw.
			if want := wantRoute(s); s != stratDirect && s != stratProxy && sum.Routes[want] != sumValues(sum.Routes) {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s c=%d: not every connection took the %s route: %v", s, conc, want, sum.Routes))
			}
		}
		// The curve: strategies measured beyond the two levels every
		// strategy has.
		if len(curve.Points) > 2 {
			curve.Strategy = s
			r.Curve = append(r.Curve, curve)
		}
	}

	stream := map[string]map[int]StreamPhase{}
	for _, p := range r.Raw.Stream {
		if stream[p.Strategy] == nil {
			stream[p.Strategy] = map[int]StreamPhase{}
		}
		stream[p.Strategy][p.Round] = p
	}
	for _, s := range strategies {
		rounds, ok := stream[s]
		if !ok {
			continue
		}
		var mbps, cpu []float64
		sum := StreamSummary{Strategy: s}
		for round := range r.Config.Rounds {
			if p, ok := rounds[round]; ok {
				mbps = append(mbps, p.MBps)
				cpu = append(cpu, float64(p.CPU.total())/1e3/(float64(p.Result.Written)/1e6))
				sum.Route = p.Result.Route
			}
		}
		sum.MBps, sum.CPUPerMB = newRange(mbps), newRange(cpu)
		r.Stream = append(r.Stream, sum)
	}

	if len(r.Raw.Cold) > 0 {
		var hello, listen, echo []float64
		c := ColdSummary{Samples: len(r.Raw.Cold), Routes: map[string]int{}}
		for _, s := range r.Raw.Cold {
			hello = append(hello, float64(s.HelloToEchoNS)/1e6)
			listen = append(listen, float64(s.ExecToListenNS)/1e6)
			echo = append(echo, float64(s.ExecToEchoNS)/1e6)
			c.Routes[s.Route]++
		}
		c.HelloToEchoMS, c.ExecToListenMS, c.ExecToEchoMS = newRange(hello), newRange(listen), newRange(echo)
		c.OverheadMS = c.HelloToEchoMS.Median - c.ExecToListenMS.Median
		r.Cold = c
	}

	r.Ratios, r.RatioRanges = map[string]float64{}, map[string]RangeStat{}
	for _, d := range r.ratioDefs(rtt, stream) {
		var vals []float64
		for round := range r.Config.Rounds {
			if v, ok := d.f(round); ok {
				vals = append(vals, v)
			}
		}
		if len(vals) > 0 {
			rs := newRange(vals)
			r.Ratios[d.name], r.RatioRanges[d.name] = rs.Median, rs
		}
	}
	// Handoff-capable Hellos the broker did not hand off, and why (the
	// reconnect rows' Hellos say client_unsupported, which is expected).
	var notHanded []string
	for k, v := range r.BrokerCounters {
		if v > 0 && strings.HasPrefix(k, "portier_hellos_total{") && !strings.Contains(k, `outcome="handoff"`) &&
			!strings.Contains(k, `reason="client_unsupported"`) {
			notHanded = append(notHanded, fmt.Sprintf("%s %v", k, v))
		}
	}
	if len(notHanded) > 0 {
		slices.Sort(notHanded)
		r.Warnings = append(r.Warnings, "the broker did not hand off some Hellos that asked for it (counts over the whole run, warm-up and cold phases included): "+
			strings.Join(notHanded, "; "))
	}
	r.targets()
}

// ratioDefs are the ratios a report computes per round.
func (r *Report) ratioDefs(rtt map[rttKey]RTTPhase, stream map[string]map[int]StreamPhase) []ratioDef {
	ratio := func(num, den func(RTTPhase) float64, sn, sd string, conc int) func(int) (float64, bool) {
		return func(round int) (float64, bool) {
			a, ok1 := rtt[rttKey{sn, conc, round}]
			b, ok2 := rtt[rttKey{sd, conc, round}]
			if !ok1 || !ok2 || den(b) == 0 {
				return 0, false
			}
			return num(a) / den(b), true
		}
	}
	p50 := func(p RTTPhase) float64 { return float64(p.Result.P50NS) }
	p99 := func(p RTTPhase) float64 { return float64(p.Result.P99NS) }
	cps := func(p RTTPhase) float64 { return p.ConnsPerSec }
	cpu := func(p RTTPhase) float64 { return p.CPUPerConnNS }
	streamRatio := func(sn, sd string) func(int) (float64, bool) {
		return func(round int) (float64, bool) {
			a, ok1 := stream[sn][round]
			b, ok2 := stream[sd][round]
			if !ok1 || !ok2 || b.MBps == 0 {
				return 0, false
			}
			return a.MBps / b.MBps, true
		}
	}
	defs := []ratioDef{
		{"handoff_vs_reconnect_p50_c1", "handoff p50 / reconnect p50, concurrency 1", ratio(p50, p50, stratHandoff, stratReconnect, 1)},
		{"handoff_vs_reconnect_p99_c1", "handoff p99 / reconnect p99, concurrency 1", ratio(p99, p99, stratHandoff, stratReconnect, 1)},
		{"handoff_vs_direct_p50_c1", "handoff p50 / direct p50, concurrency 1", ratio(p50, p50, stratHandoff, stratDirect, 1)},
		{"handoff_vs_reconnect_conns_c16", "handoff conns/s / reconnect conns/s, concurrency 16", ratio(cps, cps, stratHandoff, stratReconnect, highConc)},
		{"fastpath_vs_direct_p50_c1", "fast path p50 / direct p50, concurrency 1", ratio(p50, p50, stratFastpath, stratDirect, 1)},
		{"stream_handoff_vs_direct", "MB/s after handoff / MB/s direct", streamRatio(stratHandoff, stratDirect)},
		{"handoff_vs_reconnect_p50_c16", "handoff p50 / reconnect p50, concurrency 16", ratio(p50, p50, stratHandoff, stratReconnect, highConc)},
		{"handoff_vs_reconnect_cpu_c16", "CPU per connection, handoff / reconnect, concurrency 16", ratio(cpu, cpu, stratHandoff, stratReconnect, highConc)},
		{"handoff_vs_proxy_p50_c1", "handoff p50 / proxy p50, concurrency 1", ratio(p50, p50, stratHandoff, stratProxy, 1)},
		{"proxy_vs_direct_p50_c1", "proxy p50 / direct p50, concurrency 1", ratio(p50, p50, stratProxy, stratDirect, 1)},
		{"stream_proxy_vs_direct", "MB/s through the proxy / MB/s direct", streamRatio(stratProxy, stratDirect)},
		{"stream_reconnect_vs_direct", "MB/s after reconnect / MB/s direct", streamRatio(stratReconnect, stratDirect)},
	}
	if r.Config.Early {
		defs = append(defs,
			ratioDef{"handoff_early_vs_reconnect_early_p50_c1", "handoff+early p50 / reconnect+early p50, concurrency 1", ratio(p50, p50, stratHandoffEarly, stratReconnectEarly, 1)},
			ratioDef{"handoff_early_vs_handoff_p50_c1", "handoff+early p50 / handoff p50, concurrency 1", ratio(p50, p50, stratHandoffEarly, stratHandoff, 1)},
			ratioDef{"handoff_early_vs_direct_p50_c1", "handoff+early p50 / direct p50, concurrency 1", ratio(p50, p50, stratHandoffEarly, stratDirect, 1)},
		)
	}
	return defs
}

// targets checks the targets against the medians.
func (r *Report) targets() {
	ratioTarget := func(name, rule, op string, limit, stretch float64) {
		rs, ok := r.RatioRanges[name]
		if !ok {
			return
		}
		meets := func(l float64) bool {
			if op == ">=" {
				return rs.Median >= l
			}
			return rs.Median <= l
		}
		t := TargetResult{Name: name, Rule: rule, Op: op, Limit: limit, Measured: rs.Median,
			Spread: fmt.Sprintf("%.2f–%.2f", rs.Min, rs.Max), Met: meets(limit)}
		if stretch != 0 {
			t.Stretch, t.StretchMet = stretch, meets(stretch)
		}
		r.Targets = append(r.Targets, t)
	}
	ratioTarget("handoff_vs_reconnect_p50_c1", "handoff p50 ≤ 0.85× reconnect p50 (c=1; stretch 0.75)", "<=", 0.85, 0.75)
	ratioTarget("handoff_vs_reconnect_p99_c1", "handoff p99 ≤ 0.85× reconnect p99 (c=1)", "<=", 0.85, 0)
	ratioTarget("handoff_vs_direct_p50_c1", "handoff p50 ≤ 2.0× direct p50 (c=1)", "<=", 2.0, 0)
	ratioTarget("handoff_vs_reconnect_conns_c16", "handoff conns/s ≥ 1.0× reconnect conns/s (c=16; stretch 1.1)", ">=", 1.0, 1.1)
	ratioTarget("fastpath_vs_direct_p50_c1", "fast path p50 ≤ 1.15× direct p50 (c=1)", "<=", 1.15, 0)
	ratioTarget("stream_handoff_vs_direct", "streaming after handoff ≥ 0.95× direct", ">=", 0.95, 0)
	if r.Cold.Samples > 0 {
		r.Targets = append(r.Targets, TargetResult{Name: "cold_start_overhead_ms",
			Rule: "cold start (Hello→echo) ≤ backend exec→listening + 5 ms", Op: "<=", Limit: 5, Measured: r.Cold.OverheadMS,
			Spread: fmt.Sprintf("%.2f ms vs %.2f ms", r.Cold.HelloToEchoMS.Median, r.Cold.ExecToListenMS.Median),
			Met:    r.Cold.OverheadMS <= 5})
	}
	if len(r.Herd) > 0 {
		worst := 0
		for _, h := range r.Herd {
			worst = max(worst, h.Spawns)
		}
		r.Targets = append(r.Targets, TargetResult{Name: "herd_spawns",
			Rule: fmt.Sprintf("%d concurrent cold Hellos → 1 spawn", r.Config.Herd), Op: "<=", Limit: 1, Measured: float64(worst),
			Spread: fmt.Sprintf("worst of %d rounds", len(r.Herd)), Met: worst == 1})
	}
	idle := float64(max(r.RSS.IdleStart.RSSKiB, r.RSS.IdleAfterLoad.RSSKiB)) / 1024
	r.Targets = append(r.Targets, TargetResult{Name: "broker_rss_idle_mib", Rule: "broker RSS idle ≤ 25 MiB", Op: "<=", Limit: 25,
		Measured: idle, Spread: fmt.Sprintf("start %.1f, after load %.1f", float64(r.RSS.IdleStart.RSSKiB)/1024, float64(r.RSS.IdleAfterLoad.RSSKiB)/1024),
		Met: idle <= 25})
	if r.RSS.PendingConns > 0 {
		m := float64(r.RSS.Pending.RSSKiB) / 1024
		r.Targets = append(r.Targets, TargetResult{Name: "broker_rss_pending_mib",
			Rule: fmt.Sprintf("broker RSS with %d pending connections ≤ 80 MiB", r.RSS.PendingConns), Op: "<=", Limit: 80,
			Measured: m, Spread: fmt.Sprintf("%d fds", r.RSS.Pending.FDs), Met: m <= 80})
	}
	if p := r.Parked; p != nil && p.Clients > 0 {
		r.Targets = append(r.Targets, TargetResult{Name: "broker_parked_fds_after_1s",
			Rule: fmt.Sprintf("broker fds back to idle within 1 s after %d parked clients close", p.Clients), Op: "<=", Limit: 0,
			Measured: float64(p.FDsAfter1s - p.BaselineFDs),
			Spread:   fmt.Sprintf("%d fds at +1 s, %d at baseline, %d parked", p.FDsAfter1s, p.BaselineFDs, p.PendingFDs),
			Met:      p.FDsAfter1s <= p.BaselineFDs})
	}
}

// perConn is the per-connection medians of the rounds' counts; n holds
// each round's connections. nil when no round has counts (a report saved
// before they were measured).
func perConn(rounds []map[string]ProcCounts, n []float64) map[string]ConnCounts {
	if len(rounds) == 0 {
		return nil
	}
	type series struct{ cs, vol, nonvol, rw, r, w []float64 }
	by := map[string]*series{}
	for i, counts := range rounds {
		var total ProcCounts
		names := slices.Sorted(maps.Keys(counts))
		for _, name := range names {
			total = total.add(counts[name])
		}
		for _, name := range append(names, "total") {
			c, ok := counts[name]
			if name == "total" {
				c, ok = total, true
			}
			if !ok {
				continue
			}
			s := by[name]
			if s == nil {
				s = &series{}
				by[name] = s
			}
			s.cs = append(s.cs, float64(c.VoluntaryCS+c.NonvoluntaryCS)/n[i])
			s.vol = append(s.vol, float64(c.VoluntaryCS)/n[i])
			s.nonvol = append(s.nonvol, float64(c.NonvoluntaryCS)/n[i])
			s.rw = append(s.rw, float64(c.SysR+c.SysW)/n[i])
			s.r = append(s.r, float64(c.SysR)/n[i])
			s.w = append(s.w, float64(c.SysW)/n[i])
		}
	}
	out := make(map[string]ConnCounts, len(by))
	for name, s := range by {
		out[name] = ConnCounts{CtxSwitches: newRange(s.cs).Median, Voluntary: newRange(s.vol).Median,
			Nonvoluntary: newRange(s.nonvol).Median, RWSyscalls: newRange(s.rw).Median,
			SysR: newRange(s.r).Median, SysW: newRange(s.w).Median}
	}
	return out
}

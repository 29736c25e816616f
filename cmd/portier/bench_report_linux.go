package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// benchReport is everything a run measured: summaries first, the raw
// per-phase figures under "raw".
type benchReport struct {
	Command   string      `json:"command"`
	StartedAt string      `json:"started_at"`
	DurationS float64     `json:"duration_s"`
	Machine   machineInfo `json:"machine"`
	Config    benchConfig `json:"config"`

	// Ratios are the per-round ratios' medians; RatioRanges adds min, max
	// and every round's value.
	Ratios      map[string]float64   `json:"ratios"`
	RatioRanges map[string]rangeStat `json:"ratio_ranges"`

	RTT    []rttSummary    `json:"rtt"`
	Stream []streamSummary `json:"stream"`
	Cold   coldSummary     `json:"cold_start"`
	Herd   []herdSample    `json:"herd"`
	RSS    rssResult       `json:"broker_rss"`
	// BrokerCounters are the broker's route, handoff and spawn counters
	// after the load phases (before the RSS phase), for fallback reasons.
	BrokerCounters map[string]float64 `json:"broker_counters"`
	Targets        []targetResult     `json:"targets"`
	Warnings       []string           `json:"warnings,omitempty"`

	Raw struct {
		RTT    []rttPhase    `json:"rtt"`
		Stream []streamPhase `json:"stream"`
		Cold   []coldSample  `json:"cold"`
	} `json:"raw"`
}

// rangeStat is a figure over rounds (or samples): median, min, max and
// every value in order.
type rangeStat struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

func newRange(vals []float64) rangeStat {
	if len(vals) == 0 {
		return rangeStat{}
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	return rangeStat{Median: median(s), Min: s[0], Max: s[len(s)-1], Values: vals}
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// rttSummary is one strategy at one concurrency over all rounds.
type rttSummary struct {
	Strategy     string    `json:"strategy"`
	Concurrency  int       `json:"concurrency"`
	P50US        rangeStat `json:"p50_us"`
	P99US        rangeStat `json:"p99_us"`
	P999US       rangeStat `json:"p999_us"`
	ConnsPerSec  rangeStat `json:"conns_per_s"`
	CPUPerConnUS rangeStat `json:"cpu_per_conn_us"`
	// CPUByProcessUS is the median over rounds of each process's CPU per
	// connection.
	CPUByProcessUS map[string]float64 `json:"cpu_per_conn_by_process_us"`
	// OtherCPUPct: CPU used by processes outside the bench during the
	// phases, in percent of all CPUs.
	OtherCPUPct rangeStat      `json:"other_cpu_pct"`
	Routes      map[string]int `json:"routes"`
	Errors      int            `json:"errors"`
	Fallbacks   uint64         `json:"broker_fallbacks"`
}

// streamSummary is one strategy's streaming over all rounds.
type streamSummary struct {
	Strategy string    `json:"strategy"`
	MBps     rangeStat `json:"mb_per_s"`
	CPUPerMB rangeStat `json:"cpu_us_per_mb"`
	Route    string    `json:"route"`
}

// coldSummary is the cold-start figures over every sample.
type coldSummary struct {
	Samples        int            `json:"samples"`
	HelloToEchoMS  rangeStat      `json:"hello_to_echo_ms"`
	ExecToListenMS rangeStat      `json:"exec_to_listening_ms"`
	ExecToEchoMS   rangeStat      `json:"exec_to_echo_ms"`
	OverheadMS     float64        `json:"overhead_ms"` // median Hello→echo minus median exec→listening
	Routes         map[string]int `json:"routes"`
}

// targetResult is one of the targets against what was measured.
type targetResult struct {
	Name     string  `json:"name"`
	Rule     string  `json:"rule"`
	Op       string  `json:"op"`
	Limit    float64 `json:"limit"`
	Measured float64 `json:"measured"`
	Spread   string  `json:"spread,omitempty"`
	Met      bool    `json:"met"`
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

// summarize computes the summaries, ratios and targets from the raw phases.
func (r *benchReport) summarize() {
	rtt := map[rttKey]rttPhase{}
	var strategies []string
	for _, p := range r.Raw.RTT {
		rtt[rttKey{p.Strategy, p.Concurrency, p.Round}] = p
		if !slices.Contains(strategies, p.Strategy) {
			strategies = append(strategies, p.Strategy)
		}
	}
	order := []string{stratDirect, stratHandoff, stratReconnect, stratProxy, stratHandoffEarly, stratReconnectEarly}
	sort.SliceStable(strategies, func(i, j int) bool {
		return slices.Index(order, strategies[i]) < slices.Index(order, strategies[j])
	})
	for _, s := range strategies {
		for _, conc := range []int{1, highConc} {
			sum := rttSummary{Strategy: s, Concurrency: conc, Routes: map[string]int{}, CPUByProcessUS: map[string]float64{}}
			var p50, p99, p999, cps, cpu, other []float64
			by := map[string][]float64{}
			for round := range r.Config.Rounds {
				p, ok := rtt[rttKey{s, conc, round}]
				if !ok {
					continue
				}
				n := float64(p.Result.N)
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
			r.RTT = append(r.RTT, sum)
			if sum.Errors > 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s c=%d: %d connections failed and are not in the latency figures", s, conc, sum.Errors))
			}
			if want := strings.TrimSuffix(s, "+early"); (want == stratHandoff || want == stratReconnect) && sum.Routes[want] != sumValues(sum.Routes) {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s c=%d: not every connection took the %s route: %v", s, conc, want, sum.Routes))
			}
		}
	}

	stream := map[string]map[int]streamPhase{}
	for _, p := range r.Raw.Stream {
		if stream[p.Strategy] == nil {
			stream[p.Strategy] = map[int]streamPhase{}
		}
		stream[p.Strategy][p.Round] = p
	}
	for _, s := range strategies {
		rounds, ok := stream[s]
		if !ok {
			continue
		}
		var mbps, cpu []float64
		sum := streamSummary{Strategy: s}
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
		c := coldSummary{Samples: len(r.Raw.Cold), Routes: map[string]int{}}
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

	ratio := func(num, den func(rttPhase) float64, sn, sd string, conc int) func(int) (float64, bool) {
		return func(round int) (float64, bool) {
			a, ok1 := rtt[rttKey{sn, conc, round}]
			b, ok2 := rtt[rttKey{sd, conc, round}]
			if !ok1 || !ok2 || den(b) == 0 {
				return 0, false
			}
			return num(a) / den(b), true
		}
	}
	p50 := func(p rttPhase) float64 { return float64(p.Result.P50NS) }
	p99 := func(p rttPhase) float64 { return float64(p.Result.P99NS) }
	cps := func(p rttPhase) float64 { return p.ConnsPerSec }
	cpu := func(p rttPhase) float64 { return p.CPUPerConnNS }
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
	r.Ratios, r.RatioRanges = map[string]float64{}, map[string]rangeStat{}
	for _, d := range defs {
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

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// targets checks the targets against the medians.
func (r *benchReport) targets() {
	ratioTarget := func(name, rule, op string, limit float64) {
		rs, ok := r.RatioRanges[name]
		if !ok {
			return
		}
		met := rs.Median <= limit
		if op == ">=" {
			met = rs.Median >= limit
		}
		r.Targets = append(r.Targets, targetResult{Name: name, Rule: rule, Op: op, Limit: limit, Measured: rs.Median,
			Spread: fmt.Sprintf("%.2f–%.2f", rs.Min, rs.Max), Met: met})
	}
	ratioTarget("handoff_vs_reconnect_p50_c1", "handoff p50 ≤ 0.75× reconnect p50 (c=1)", "<=", 0.75)
	ratioTarget("handoff_vs_reconnect_p99_c1", "handoff p99 ≤ 0.85× reconnect p99 (c=1)", "<=", 0.85)
	ratioTarget("handoff_vs_direct_p50_c1", "handoff p50 ≤ 2.0× direct p50 (c=1)", "<=", 2.0)
	ratioTarget("handoff_vs_reconnect_conns_c16", "handoff conns/s ≥ 1.1× reconnect conns/s (c=16)", ">=", 1.1)
	ratioTarget("stream_handoff_vs_direct", "streaming after handoff ≥ 0.95× direct", ">=", 0.95)
	if r.Cold.Samples > 0 {
		r.Targets = append(r.Targets, targetResult{Name: "cold_start_overhead_ms",
			Rule: "cold start (Hello→echo) ≤ backend exec→listening + 5 ms", Op: "<=", Limit: 5, Measured: r.Cold.OverheadMS,
			Spread: fmt.Sprintf("%.2f ms vs %.2f ms", r.Cold.HelloToEchoMS.Median, r.Cold.ExecToListenMS.Median),
			Met:    r.Cold.OverheadMS <= 5})
	}
	if len(r.Herd) > 0 {
		worst := 0
		for _, h := range r.Herd {
			worst = max(worst, h.Spawns)
		}
		r.Targets = append(r.Targets, targetResult{Name: "herd_spawns",
			Rule: fmt.Sprintf("%d concurrent cold Hellos → 1 spawn", r.Config.Herd), Op: "<=", Limit: 1, Measured: float64(worst),
			Spread: fmt.Sprintf("worst of %d rounds", len(r.Herd)), Met: worst == 1})
	}
	idle := float64(max(r.RSS.IdleStart.RSSKiB, r.RSS.IdleAfterLoad.RSSKiB)) / 1024
	r.Targets = append(r.Targets, targetResult{Name: "broker_rss_idle_mib", Rule: "broker RSS idle ≤ 25 MiB", Op: "<=", Limit: 25,
		Measured: idle, Spread: fmt.Sprintf("start %.1f, after load %.1f", float64(r.RSS.IdleStart.RSSKiB)/1024, float64(r.RSS.IdleAfterLoad.RSSKiB)/1024),
		Met: idle <= 25})
	if r.RSS.PendingConns > 0 {
		m := float64(r.RSS.Pending.RSSKiB) / 1024
		r.Targets = append(r.Targets, targetResult{Name: "broker_rss_pending_mib",
			Rule: fmt.Sprintf("broker RSS with %d pending connections ≤ 80 MiB", r.RSS.PendingConns), Op: "<=", Limit: 80,
			Measured: m, Spread: fmt.Sprintf("%d fds", r.RSS.Pending.FDs), Met: m <= 80})
	}
}

// table is one block of the report, rendered as text or markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func fmtRange(r rangeStat, prec int) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if len(r.Values) <= 1 || r.Min == r.Max {
		return f(r.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(r.Median), f(r.Min), f(r.Max))
}

func fmtRoutes(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func (r *benchReport) tables() []table {
	var ts []table
	rounds := fmt.Sprintf("median of %d rounds (min–max)", r.Config.Rounds)

	lat := table{title: "Connection setup + one 64-byte round trip + close, " + rounds,
		header: []string{"strategy", "c", "p50 µs", "p99 µs", "p999 µs", "conns/s", "CPU µs/conn", "routes"}}
	for _, s := range r.RTT {
		lat.rows = append(lat.rows, []string{s.Strategy, strconv.Itoa(s.Concurrency), fmtRange(s.P50US, 1), fmtRange(s.P99US, 1),
			fmtRange(s.P999US, 1), fmtRange(s.ConnsPerSec, 0), fmtRange(s.CPUPerConnUS, 1), fmtRoutes(s.Routes)})
	}
	lat.notes = []string{
		fmt.Sprintf("%d measured connections per phase at c=1, %d at c=16, after %d warm-up connections; one client process per phase.",
			r.Config.ConnsC1, r.Config.ConnsC16, r.Config.Warmup),
		"A sample runs from the start of client.Dial (net.Dial for direct and proxy) until the echo was read and Close returned.",
		"CPU is the on-CPU time of client, broker, backend and proxy (per-thread schedstat) during the measured phase, per connection.",
	}
	ts = append(ts, lat)

	cpu := table{title: "CPU µs per connection by process (median over rounds)",
		header: []string{"strategy", "c", "client", "broker", "backend", "proxy", "total", "other load %"}}
	for _, s := range r.RTT {
		b := s.CPUByProcessUS
		cpu.rows = append(cpu.rows, []string{s.Strategy, strconv.Itoa(s.Concurrency), fmt.Sprintf("%.1f", b["client"]),
			fmt.Sprintf("%.1f", b["broker"]), fmt.Sprintf("%.1f", b["backend"]), fmt.Sprintf("%.1f", b["proxy"]), fmt.Sprintf("%.1f", s.CPUPerConnUS.Median), fmtRange(s.OtherCPUPct, 0)})
	}
	cpu.notes = []string{"other load %: CPU time used by processes the bench did not start during the measured phases, in percent of all CPUs (from /proc/stat); high values mark disturbed rounds."}
	ts = append(ts, cpu)

	if len(r.Stream) > 0 {
		st := table{title: fmt.Sprintf("Streaming: 1 MiB writes for %s on one connection, echoed back, %s", r.Config.Stream, rounds),
			header: []string{"strategy", "MB/s", "CPU µs/MB", "route"}}
		for _, s := range r.Stream {
			st.rows = append(st.rows, []string{s.Strategy, fmtRange(s.MBps, 0), fmtRange(s.CPUPerMB, 1), s.Route})
		}
		st.notes = []string{"MB/s = bytes written (10^6 per MB) / time from the first write until the last echoed byte was read; every byte crosses the connection twice."}
		ts = append(ts, st)
	}

	ratioNames := slices.Sorted(maps.Keys(r.RatioRanges))
	first := []string{"handoff_vs_reconnect_p50_c1", "handoff_vs_reconnect_p99_c1", "handoff_vs_direct_p50_c1", "handoff_vs_reconnect_conns_c16", "stream_handoff_vs_direct"}
	sort.SliceStable(ratioNames, func(i, j int) bool {
		ii, jj := slices.Index(first, ratioNames[i]), slices.Index(first, ratioNames[j])
		if ii < 0 {
			ii = len(first)
		}
		if jj < 0 {
			jj = len(first)
		}
		return ii < jj
	})
	rt := table{title: "Ratios, computed per round: " + rounds, header: []string{"ratio", "value"}}
	for _, n := range ratioNames {
		rt.rows = append(rt.rows, []string{n, fmtRange(r.RatioRanges[n], 2)})
	}
	ts = append(ts, rt)

	if r.Cold.Samples > 0 {
		c := r.Cold
		ct := table{title: fmt.Sprintf("Cold start, median of %d samples (min–max)", c.Samples), header: []string{"measure", "ms"}}
		ct.rows = [][]string{
			{"Hello → 64-byte echo, service stopped (through the broker)", fmtRange(c.HelloToEchoMS, 2)},
			{"backend standalone: exec → listening", fmtRange(c.ExecToListenMS, 2)},
			{"backend standalone: exec → 64-byte echo", fmtRange(c.ExecToEchoMS, 2)},
			{"broker overhead (median Hello→echo − median exec→listening)", fmt.Sprintf("%.2f", c.OverheadMS)},
		}
		ct.notes = []string{"Routes of the cold connections: " + fmtRoutes(c.Routes) + "."}
		ts = append(ts, ct)
	}
	if len(r.Herd) > 0 {
		ht := table{title: fmt.Sprintf("%d concurrent Hellos to a stopped service", r.Config.Herd),
			header: []string{"round", "spawns", "served", "p50 ms", "max ms", "routes"}}
		for _, h := range r.Herd {
			ht.rows = append(ht.rows, []string{strconv.Itoa(h.Round + 1), strconv.Itoa(h.Spawns), strconv.Itoa(h.Served),
				fmt.Sprintf("%.2f", float64(h.P50NS)/1e6), fmt.Sprintf("%.2f", float64(h.MaxNS)/1e6), fmtRoutes(h.Routes)})
		}
		ht.notes = []string{"spawns = portier_backend_spawns_total for the service, from the broker's metrics."}
		ts = append(ts, ht)
	}
	mem := func(m procMem) string { return fmt.Sprintf("%.1f", float64(m.RSSKiB)/1024) }
	hwm := func(m procMem) string { return fmt.Sprintf("%.1f", float64(m.HWMKiB)/1024) }
	row := func(state string, m procMem) []string {
		return []string{state, mem(m), hwm(m), strconv.Itoa(m.FDs), strconv.Itoa(m.Threads)}
	}
	rs := table{title: "Broker memory (from /proc/<pid>/status)", header: []string{"state", "VmRSS MiB", "VmHWM MiB (peak so far)", "fds", "threads"}}
	rs.rows = [][]string{
		row("idle, echo backend registered, before any load", r.RSS.IdleStart),
		row("idle, after every load phase", r.RSS.IdleAfterLoad),
	}
	if r.RSS.PendingConns > 0 {
		rs.rows = append(rs.rows,
			row(fmt.Sprintf("%d Hellos pending (%.1f KiB each above idle after load)", r.RSS.PendingConns,
				float64(r.RSS.Pending.RSSKiB-r.RSS.IdleAfterLoad.RSSKiB)/float64(r.RSS.PendingConns)), r.RSS.Pending),
			row("1 s after they closed and their backend was stopped (every waiting Hello is refused)", r.RSS.AfterRelease))
		rs.notes = []string{"Pending: " + r.RSS.Method + "."}
	}
	ts = append(ts, rs)

	tt := table{title: "Targets", header: []string{"target", "measured", "spread", "result"}}
	for _, t := range r.Targets {
		res := "met"
		if !t.Met {
			res = "MISSED"
		}
		tt.rows = append(tt.rows, []string{t.Rule, fmt.Sprintf("%.2f", t.Measured), t.Spread, res})
	}
	ts = append(ts, tt)
	return ts
}

func (r *benchReport) headerLines() []string {
	m := r.Machine
	var other, steal []float64
	for _, p := range r.Raw.RTT {
		if p.Round >= 0 {
			other, steal = append(other, p.CPU.OtherPct), append(steal, p.CPU.StealPct)
		}
	}
	o, st := newRange(other), newRange(steal)
	return []string{
		fmt.Sprintf("machine: %d CPUs, %s, Linux %s, %s", m.NProc, m.CPUModel, m.Kernel, m.GoVersion),
		fmt.Sprintf("code: %s", cmp.Or(m.Revision, "unknown revision")),
		fmt.Sprintf("command: %s (took %s)", r.Command, (time.Duration(r.DurationS * float64(time.Second))).Round(time.Second)),
		fmt.Sprintf("load from other processes during the round-trip phases: median %.0f%%, max %.0f%% of all CPUs; steal median %.1f%%, max %.1f%%",
			o.Median, o.Max, st.Median, st.Max),
	}
}

// writeText prints the human-readable report.
func (r *benchReport) writeText(w io.Writer) {
	for _, l := range r.headerLines() {
		fmt.Fprintln(w, l)
	}
	for _, t := range r.tables() {
		fmt.Fprintf(w, "\n%s\n", t.title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, row := range t.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		for _, n := range t.notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintln(w, "\nwarning:", warn)
	}
}

// writeMarkdown prints the report as markdown, for docs/PERFORMANCE.md.
func (r *benchReport) writeMarkdown(w io.Writer) {
	for _, l := range r.headerLines() {
		fmt.Fprintf(w, "- %s\n", l)
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, t := range r.tables() {
		fmt.Fprintf(w, "\n**%s**\n\n", t.title)
		fmt.Fprintf(w, "| %s |\n|", strings.Join(t.header, " | "))
		for range t.header {
			fmt.Fprint(w, "---|")
		}
		fmt.Fprintln(w)
		for _, row := range t.rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = esc(c)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		if len(t.notes) > 0 {
			fmt.Fprintln(w)
			for _, n := range t.notes {
				fmt.Fprintln(w, n)
			}
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "\n> warning: %s\n", warn)
	}
}

package bench

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

// table is one block of the report, rendered as text or markdown.
type table struct {
	title  string
	header []string
	rows   [][]string
	notes  []string
}

func fmtRange(r RangeStat, prec int) string {
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

// headlineRatios come first in the ratio table, in this order.
var headlineRatios = []string{"handoff_vs_reconnect_p50_c1", "handoff_vs_reconnect_p99_c1", "handoff_vs_direct_p50_c1",
	"handoff_vs_reconnect_conns_c16", "fastpath_vs_direct_p50_c1", "stream_handoff_vs_direct"}

func (r *Report) tables() []table {
	var ts []table
	rounds := fmt.Sprintf("median of %d rounds (min–max)", r.Config.Rounds)

	lat := table{title: "Connection setup + one 64-byte round trip + close, " + rounds,
		header: []string{"strategy", "c", "p50 µs", "p99 µs", "p999 µs", "conns/s", "CPU µs/conn", "routes"}}
	for _, s := range r.RTT {
		lat.rows = append(lat.rows, []string{s.Strategy, strconv.Itoa(s.Concurrency), fmtRange(s.P50US, 1), fmtRange(s.P99US, 1),
			fmtRange(s.P999US, 1), fmtRange(s.ConnsPerSec, 0), fmtRange(s.CPUPerConnUS, 1), fmtRoutes(s.Routes)})
	}
	conns := fmt.Sprintf("%d measured connections per phase at c=1, %d at c=16", r.Config.ConnsC1, r.Config.ConnsC16)
	if len(r.Curve) > 0 {
		conns += fmt.Sprintf(", %d at the curve's other levels", r.Config.ConnsCurve)
	}
	lat.notes = []string{
		fmt.Sprintf("%s, after %d warm-up connections; one client process per phase.", conns, r.Config.Warmup),
		"A sample runs from the start of client.Dial (net.Dial for direct and proxy) until the echo was read and Close returned.",
		"CPU is the on-CPU time of client, broker, backend and proxy (per-thread schedstat) during the measured phase, per connection.",
	}
	if slices.ContainsFunc(r.RTT, func(s RTTSummary) bool { return s.Strategy == stratFastpath }) {
		lat.notes = append(lat.notes, "fastpath: client.Dial with the default options in a client process whose first (warm-up) Dial filled the hello-skip cache, so it dials backend_pipe directly (route direct); handoff and reconnect pass NoHelloSkip, so each of their Dials sends a Hello.")
	}
	ts = append(ts, lat)

	if len(r.Curve) > 0 {
		var levels []int
		for _, c := range r.Curve {
			for _, p := range c.Points {
				if !slices.Contains(levels, p.Concurrency) {
					levels = append(levels, p.Concurrency)
				}
			}
		}
		slices.Sort(levels)
		ct := table{title: "Concurrency curve: conns/s, p50 / p99 µs, " + strings.TrimSuffix(rounds, " (min–max)"), header: []string{"strategy"}}
		for _, l := range levels {
			ct.header = append(ct.header, "c="+strconv.Itoa(l))
		}
		for _, c := range r.Curve {
			row := []string{c.Strategy}
			for _, l := range levels {
				i := slices.IndexFunc(c.Points, func(p CurvePoint) bool { return p.Concurrency == l })
				if i < 0 {
					row = append(row, "")
					continue
				}
				p := c.Points[i]
				row = append(row, fmt.Sprintf("%.0f/s, %.1f / %.1f", p.ConnsPerSec, p.P50US, p.P99US))
			}
			ct.rows = append(ct.rows, row)
		}
		ts = append(ts, ct)
	}

	cpu := table{title: "CPU µs per connection by process (median over rounds)",
		header: []string{"strategy", "c", "client", "broker", "backend", "proxy", "total", "other load %"}}
	for _, s := range r.RTT {
		b := s.CPUByProcessUS
		cpu.rows = append(cpu.rows, []string{s.Strategy, strconv.Itoa(s.Concurrency), fmt.Sprintf("%.1f", b["client"]),
			fmt.Sprintf("%.1f", b["broker"]), fmt.Sprintf("%.1f", b["backend"]), fmt.Sprintf("%.1f", b["proxy"]), fmt.Sprintf("%.1f", s.CPUPerConnUS.Median), fmtRange(s.OtherCPUPct, 0)})
	}
	cpu.notes = []string{"other load %: CPU time used by processes the bench did not start during the measured phases, in percent of all CPUs (from /proc/stat); high values mark disturbed rounds."}
	ts = append(ts, cpu)

	if slices.ContainsFunc(r.RTT, func(s RTTSummary) bool { return s.PerConnByProcess != nil }) {
		kt := table{title: "Context switches / read+write syscalls per connection by process (median over rounds)",
			header: []string{"strategy", "c", "client", "broker", "backend", "proxy", "total"}}
		for _, s := range r.RTT {
			if s.PerConnByProcess == nil {
				continue
			}
			row := []string{s.Strategy, strconv.Itoa(s.Concurrency)}
			for _, name := range []string{"client", "broker", "backend", "proxy", "total"} {
				c := s.PerConnByProcess[name]
				row = append(row, fmt.Sprintf("%.1f / %.1f", c.CtxSwitches, c.RWSyscalls))
			}
			kt.rows = append(kt.rows, row)
		}
		kt.notes = []string{
			"Context switches: voluntary + nonvoluntary, summed over each process's threads (/proc/<pid>/task/<tid>/status); the JSON has them apart.",
			"Read+write syscalls: syscr + syscw from /proc/<pid>/io, which count the read and write family (read, write, readv, writev, ...) and not recvmsg, sendmsg, accept, connect, epoll or futex.",
		}
		ts = append(ts, kt)
	}

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
	sort.SliceStable(ratioNames, func(i, j int) bool {
		ii, jj := slices.Index(headlineRatios, ratioNames[i]), slices.Index(headlineRatios, ratioNames[j])
		if ii < 0 {
			ii = len(headlineRatios)
		}
		if jj < 0 {
			jj = len(headlineRatios)
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
	mem := func(m ProcMem) string { return fmt.Sprintf("%.1f", float64(m.RSSKiB)/1024) }
	hwm := func(m ProcMem) string { return fmt.Sprintf("%.1f", float64(m.HWMKiB)/1024) }
	row := func(state string, m ProcMem) []string {
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

	if p := r.Parked; p != nil && p.Clients > 0 {
		back := "not within " + parkedWindow.String()
		if p.BackToBaselineMS >= 0 {
			back = fmt.Sprintf("%.0f ms after the last client exited", p.BackToBaselineMS)
		}
		pt := table{title: fmt.Sprintf("Broker descriptors after %d parked clients close", p.Clients), header: []string{"state", "fds"}}
		pt.rows = [][]string{
			{"idle, after every load phase", strconv.Itoa(p.IdleFDs)},
			{"baseline: stalled backend starting, one sentinel Hello parked", strconv.Itoa(p.BaselineFDs)},
			{fmt.Sprintf("%d more Hellos parked", p.Clients), strconv.Itoa(p.PendingFDs)},
			{fmt.Sprintf("%s after their clients exited", parkedWindow), strconv.Itoa(p.FDsAfter1s)},
			{"back at the baseline", back},
		}
		pt.notes = []string{"Method: " + p.Method + "."}
		ts = append(ts, pt)
	}

	tt := table{title: "Targets", header: []string{"target", "measured", "spread", "result"}}
	for _, t := range r.Targets {
		res := "met"
		switch {
		case !t.Met:
			res = "MISSED"
		case t.Stretch != 0 && !t.StretchMet:
			res = fmt.Sprintf("met (stretch %v missed)", t.Stretch)
		case t.Stretch != 0:
			res = "met (stretch too)"
		}
		tt.rows = append(tt.rows, []string{t.Rule, fmt.Sprintf("%.2f", t.Measured), t.Spread, res})
	}
	ts = append(ts, tt)
	return ts
}

func (r *Report) headerLines() []string {
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

// WriteText prints the human-readable report.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, l := range r.headerLines() {
		fmt.Fprintln(ew, l)
	}
	for _, t := range r.tables() {
		fmt.Fprintf(ew, "\n%s\n", t.title)
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(t.header, "\t"))
		for _, row := range t.rows {
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		tw.Flush()
		for _, n := range t.notes {
			fmt.Fprintln(ew, "  "+n)
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintln(ew, "\nwarning:", warn)
	}
	return ew.err
}

// WriteMarkdown prints the report as markdown, for docs/PERFORMANCE.md.
func (r *Report) WriteMarkdown(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, l := range r.headerLines() {
		fmt.Fprintf(ew, "- %s\n", l)
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, t := range r.tables() {
		fmt.Fprintf(ew, "\n**%s**\n\n", t.title)
		fmt.Fprintf(ew, "| %s |\n|", strings.Join(t.header, " | "))
		for range t.header {
			fmt.Fprint(ew, "---|")
		}
		fmt.Fprintln(ew)
		for _, row := range t.rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = esc(c)
			}
			fmt.Fprintf(ew, "| %s |\n", strings.Join(cells, " | "))
		}
		if len(t.notes) > 0 {
			fmt.Fprintln(ew)
			for _, n := range t.notes {
				fmt.Fprintln(ew, n)
			}
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(ew, "\n> warning: %s\n", warn)
	}
	return ew.err
}

// errWriter keeps the first write error and drops every later write, so a
// renderer can print freely and report once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return len(p), nil
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

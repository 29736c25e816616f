package soak

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a soak saw. Its JSON form (encoding/json) is stable enough
// for CI to keep and compare.
type Report struct {
	Settings Settings `json:"settings"`
	// Elapsed is the time under load, from the first client to the last.
	Elapsed Duration `json:"elapsed"`
	// Clients are the short connections to "echo" (Config.Clients workers).
	Clients Counts `json:"clients"`
	// LongLived are the connections to "steady" that send one request a
	// second; Correct counts those that lived their whole Config.LongLivedFor.
	LongLived Counts `json:"long_lived"`

	// BackendKills is the number of SIGKILLs sent to echo backends.
	BackendKills int `json:"backend_kills"`
	// KillsSkipped counts kill ticks with no live echo backend to kill (no
	// broker to ask, or none listed).
	KillsSkipped int `json:"kills_skipped"`
	// DeadListed counts echo backends that `portier status` listed although
	// the soak had killed them at least KillEvery/2 earlier (QuietPoint.Dead
	// has those of any service at the quiet points).
	DeadListed int `json:"dead_listed"`
	// BrokerRestarts counts restarts by the signal that stopped the broker.
	BrokerRestarts map[string]int `json:"broker_restarts"`
	// BrokerBadExits are brokers that did not exit 0 within the bound after
	// SIGTERM.
	BrokerBadExits []string `json:"broker_bad_exits,omitempty"`
	// BrokerDown is the total time without a listening broker, as the soak
	// measured it (from the signal to the new broker's first answer to
	// `portier status`).
	BrokerDown Duration `json:"broker_down"`

	// BrokerHellos sums every broker's portier_hellos_total by outcome and
	// reason, each read just before that broker was stopped (so the last
	// moments of a broker, and Hellos of the quiet points, are included
	// or not by a few milliseconds).
	BrokerHellos map[string]int64 `json:"broker_hellos,omitempty"`
	// BrokerHellosMissed counts brokers whose counters could not be read.
	BrokerHellosMissed int `json:"broker_hellos_missed,omitempty"`

	// Before is the quiet point after warm-up, After the one after the
	// chaos ended and the system settled.
	Before QuietPoint `json:"before"`
	After  QuietPoint `json:"after"`

	// LogFindings are panics and data races found in the broker's and the
	// backends' logs.
	LogFindings []string `json:"log_findings,omitempty"`
	// Dir is the soak's directory (broker log, backend logs), when kept.
	Dir string `json:"dir,omitempty"`
}

// Settings are the Config a soak ran with, defaults applied.
type Settings struct {
	Duration      Duration `json:"duration"`
	Clients       int      `json:"clients"`
	RoundTrips    int      `json:"round_trips"`
	HungAfter     Duration `json:"hung_after"`
	KillEvery     Duration `json:"kill_every"`
	RestartEvery  Duration `json:"restart_every"`
	BrokerDownFor Duration `json:"broker_down_for"`
	LongLived     int      `json:"long_lived"`
	LongLivedFor  Duration `json:"long_lived_for"`
	SteadyIdle    Duration `json:"steady_idle"`
	Settle        Duration `json:"settle"`
	Service       string   `json:"service"`
}

// Counts are the outcomes of a set of connection attempts. Every attempt is
// exactly one of Correct, Corrupt, Hung, Interrupted or an error counted
// under its key in Errors (see the Key constants; refusals are "refused:
// <CODE>", protocol errors "ProtocolError: <op> (<cause>)").
type Counts struct {
	Attempted   int64            `json:"attempted"`
	Correct     int64            `json:"correct"`
	Corrupt     int64            `json:"corrupt"`
	Hung        int64            `json:"hung"`
	Interrupted int64            `json:"interrupted,omitempty"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	// Routes counts the correct attempts by route (handoff, reconnect,
	// direct).
	Routes map[string]int64 `json:"routes,omitempty"`
	// Samples keeps the first messages of each error key, "corrupt" and
	// "hung".
	Samples map[string][]string `json:"samples,omitempty"`
}

// QuietPoint is the broker and its backends measured with no client
// connected, after one correct round trip to "echo" and one to "steady".
type QuietPoint struct {
	Broker ProcSample `json:"broker"`
	// Backends are the live listed backends by service ("echo", a second
	// one "echo#2").
	Backends map[string]ProcSample `json:"backends,omitempty"`
	// Listed are the rows of `portier status`.
	Listed []string `json:"listed,omitempty"`
	// Dead are the listed rows whose process was gone or a zombie.
	Dead []string `json:"dead,omitempty"`
	// BackendSockets is the number of backend sockets (be-*.sock) in the
	// runtime directory.
	BackendSockets int    `json:"backend_sockets"`
	Err            string `json:"error,omitempty"`
}

// ProcSample is one process's descriptors (and, for the broker, goroutines).
type ProcSample struct {
	PID int `json:"pid"`
	// FDs counts /proc/<pid>/fd; FDKinds splits it into socket, pidfd,
	// pipe, epoll, file and other.
	FDs     int            `json:"fds"`
	FDKinds map[string]int `json:"fd_kinds,omitempty"`
	// Goroutines is the broker's go_goroutines metric when it exports one,
	// else its OS thread count; GoroutineSource says which.
	Goroutines      int    `json:"goroutines,omitempty"`
	GoroutineSource string `json:"goroutine_source,omitempty"`
	Err             string `json:"error,omitempty"`
}

// nonPidfd is the descriptors that do not depend on how the broker came to
// know its backends (a backend it started holds a pidfd, one it re-adopted
// does not).
func (p ProcSample) nonPidfd() int { return p.FDs - p.FDKinds["pidfd"] }

// Check is one expected result and how often it was not met.
type Check struct {
	Name string `json:"name"`
	// Required marks the results issue 11 requires of the soak; the others
	// are further lifecycle expectations from the same issue.
	Required bool `json:"required"`
	// Count is the number of occurrences against the expectation; 0 means
	// it was met.
	Count  int64  `json:"count"`
	Detail string `json:"detail,omitempty"`
}

// OK reports whether the expectation was met.
func (c Check) OK() bool { return c.Count == 0 }

// Checks evaluates every expectation, required ones first.
func (r *Report) Checks() []Check {
	both := func(key string) int64 { return r.Clients.Errors[key] + r.LongLived.Errors[key] }
	fd, fdDetail := r.fdExcess()
	return []Check{
		{Name: "no corrupt reply", Required: true, Count: r.Clients.Corrupt + r.LongLived.Corrupt},
		{Name: "no hung attempt", Required: true, Count: r.Clients.Hung + r.LongLived.Hung},
		{Name: "no ErrBackendUnavailable", Required: true, Count: both(KeyBackendUnavailable)},
		{Name: "no BACKEND_SPAWN_FAILED", Required: true, Count: both(KeySpawnFailed)},
		{Name: "ErrBrokerUnavailable only while no broker listens", Required: true, Count: both(KeyBrokerListening)},
		{Name: "broker descriptors back to baseline", Required: true, Count: fd, Detail: fdDetail},
		{Name: "no connection cut while its backend was not killed", Count: r.Clients.Errors[KeyCutUnexplained],
			Detail: "issue 11 item 1: a live connection is never cut"},
		{Name: "long-lived connections survive (idle quiesce)", Count: r.LongLived.Errors[KeyCutUnexplained] + r.LongLived.Errors[KeyCutKilled],
			Detail: "issue 11 item 1: a backend with live connections is not quiesced"},
		{Name: "status lists no dead backend", Count: int64(r.DeadListed + len(r.Before.Dead) + len(r.After.Dead)),
			Detail: "issue 11 item 4: a backend's death is noticed at once"},
		{Name: "no stale backend socket after settling", Count: int64(max(0, r.After.BackendSockets-r.After.live())),
			Detail: "issue 11 item 4: stale backend sockets are removed"},
		{Name: "no refusal that a valid Hello for a defined service never deserves", Count: r.wrongRefusals(),
			Detail: strings.Join(wrongRefusalKeys, ", ")},
		{Name: "SIGTERM ends the broker with status 0", Count: int64(len(r.BrokerBadExits))},
		{Name: "no panic or data race in the logs", Count: int64(len(r.LogFindings))},
	}
}

// wrongRefusalKeys are the refusals the soak's clients never deserve: they
// send valid Hellos for defined services. (SHUTTING_DOWN, RATE_LIMITED and
// FD_PRESSURE can be right under chaos; BACKEND_SPAWN_FAILED has its own
// check.)
var wrongRefusalKeys = []string{
	"refused: SERVICE_UNKNOWN", "refused: VERSION_BLOCKED", "refused: VERSION_UNSUPPORTED",
	"refused: PEER_REJECTED", "refused: INTERNAL",
}

func (r *Report) wrongRefusals() int64 {
	var n int64
	for _, k := range wrongRefusalKeys {
		n += r.Clients.Errors[k] + r.LongLived.Errors[k]
	}
	return n
}

// Violations are the checks that failed.
func (r *Report) Violations() []Check {
	var v []Check
	for _, c := range r.Checks() {
		if !c.OK() {
			v = append(v, c)
		}
	}
	return v
}

// fdExcess compares the broker's descriptors after the soak with the
// baseline. At both quiet points no client is connected and the broker
// serves the backends it lists (one echo and one steady, unless a test
// adds services). Its descriptors are then the listener, one control
// connection per listed backend, a pidfd per backend it started (none for
// one it re-adopted after a restart) and a fixed set of its own (epoll,
// lock file, reserve descriptor, log). So the tolerance is exact, per
// kind: descriptors other than pidfds at most as many as before plus one
// per live backend beyond the baseline's, and at most one pidfd per live
// backend. Every descriptor above that is counted.
func (r *Report) fdExcess() (int64, string) {
	b, a := r.Before, r.After
	switch {
	case b.Broker.FDs <= 0 || b.Err != "":
		return 1, "baseline not measured: " + b.Err + b.Broker.Err
	case a.Broker.FDs <= 0 || a.Err != "":
		return 1, "final state not measured: " + a.Err + a.Broker.Err
	}
	allowed := b.Broker.nonPidfd() + max(0, a.live()-b.live())
	excess := max(0, a.Broker.nonPidfd()-allowed) + max(0, a.Broker.FDKinds["pidfd"]-a.live())
	return int64(excess), fmt.Sprintf("non-pidfd %d -> %d (%d allowed), pidfd %d -> %d for %d live backends",
		b.Broker.nonPidfd(), a.Broker.nonPidfd(), allowed, b.Broker.FDKinds["pidfd"], a.Broker.FDKinds["pidfd"], a.live())
}

// live is the number of listed backends that were alive.
func (q QuietPoint) live() int { return len(q.Listed) - len(q.Dead) }

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for a person: counts, chaos, descriptors and
// goroutines before and after, each check, and sample errors.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	var b strings.Builder
	fmt.Fprintf(&b, "portier soak: %s under load (asked %s), %d clients x %d round trips on %q, hung after %s\n",
		r.Elapsed, s.Duration, s.Clients, s.RoundTrips, s.Service, s.HungAfter)
	fmt.Fprintf(&b, "chaos: backend SIGKILL every %s, broker restart every %s (SIGTERM and SIGKILL alternating, %s down), %d long-lived connections of %s (steady idle_timeout %s)\n\n",
		offIfZero(s.KillEvery), offIfZero(s.RestartEvery), s.BrokerDownFor, s.LongLived, s.LongLivedFor, s.SteadyIdle)

	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tclients\tlong-lived\t")
	row := func(name string, c, l int64) { fmt.Fprintf(tw, "%s\t%d\t%d\t\n", name, c, l) }
	row("attempted", r.Clients.Attempted, r.LongLived.Attempted)
	row("correct", r.Clients.Correct, r.LongLived.Correct)
	row("corrupt", r.Clients.Corrupt, r.LongLived.Corrupt)
	row("hung", r.Clients.Hung, r.LongLived.Hung)
	row("ended by the soak's end", r.Clients.Interrupted, r.LongLived.Interrupted)
	keys := map[string]bool{KeyBrokerListening: true, KeyBrokerDown: true, KeyBackendUnavailable: true, KeySpawnFailed: true}
	for k := range r.Clients.Errors {
		keys[k] = true
	}
	for k := range r.LongLived.Errors {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		row(k, r.Clients.Errors[k], r.LongLived.Errors[k])
	}
	tw.Flush()
	fmt.Fprintf(&b, "\nroutes of correct attempts: %s\n", routes(r.Clients.Routes, r.Clients.Correct))
	fmt.Fprintf(&b, "backend kills: %d (%d ticks skipped, %d dead backends listed by status)\n", r.BackendKills, r.KillsSkipped, r.DeadListed)
	fmt.Fprintf(&b, "broker restarts: %d by SIGTERM, %d by SIGKILL; no broker listening for %s in total\n",
		r.BrokerRestarts["SIGTERM"], r.BrokerRestarts["SIGKILL"], r.BrokerDown)
	if len(r.BrokerHellos) > 0 {
		var total int64
		for _, v := range r.BrokerHellos {
			total += v
		}
		b.WriteString("Hellos as the brokers counted them (portier_hellos_total, each broker's read before it stopped)")
		if r.BrokerHellosMissed > 0 {
			fmt.Fprintf(&b, ", %d brokers not read", r.BrokerHellosMissed)
		}
		b.WriteString(":\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
		for _, k := range slices.Sorted(maps.Keys(r.BrokerHellos)) {
			fmt.Fprintf(tw, "  %s\t%d\t%.1f%%\t\n", k, r.BrokerHellos[k], 100*float64(r.BrokerHellos[k])/float64(max(total, 1)))
		}
		tw.Flush()
	}
	b.WriteString("\n")

	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tbefore\tafter")
	fmt.Fprintf(tw, "broker pid\t%d\t%d\n", r.Before.Broker.PID, r.After.Broker.PID)
	fmt.Fprintf(tw, "broker fds\t%s\t%s\n", fds(r.Before.Broker), fds(r.After.Broker))
	fmt.Fprintf(tw, "broker goroutines\t%s\t%s\n", goroutines(r.Before.Broker), goroutines(r.After.Broker))
	for _, svc := range slices.Sorted(maps.Keys(unionKeys(r.Before.Backends, r.After.Backends))) {
		bb, okb := r.Before.Backends[svc]
		ab, oka := r.After.Backends[svc]
		fmt.Fprintf(tw, "backend %s fds\t%s\t%s\n", svc, fdsIf(bb, okb), fdsIf(ab, oka))
	}
	fmt.Fprintf(tw, "backends listed (dead)\t%d (%d)\t%d (%d)\n", len(r.Before.Listed), len(r.Before.Dead), len(r.After.Listed), len(r.After.Dead))
	fmt.Fprintf(tw, "backend sockets\t%d\t%d\n", r.Before.BackendSockets, r.After.BackendSockets)
	tw.Flush()
	for _, q := range []struct {
		name string
		p    QuietPoint
	}{{"before", r.Before}, {"after", r.After}} {
		if q.p.Err != "" {
			fmt.Fprintf(&b, "%s: %s\n", q.name, q.p.Err)
		}
	}

	for _, required := range []bool{true, false} {
		if required {
			b.WriteString("\nrequired results (issue 11, item 8)\n")
		} else {
			b.WriteString("\nfurther checks\n")
		}
		for _, c := range r.Checks() {
			if c.Required != required {
				continue
			}
			verdict := "ok  "
			if !c.OK() {
				verdict = fmt.Sprintf("FAIL (%d)", c.Count)
			}
			fmt.Fprintf(&b, "  %-10s %s", verdict, c.Name)
			if c.Detail != "" {
				fmt.Fprintf(&b, ": %s", c.Detail)
			}
			b.WriteString("\n")
		}
	}
	for _, f := range r.LogFindings {
		fmt.Fprintf(&b, "  log: %s\n", f)
	}
	for _, bad := range r.BrokerBadExits {
		fmt.Fprintf(&b, "  broker exit: %s\n", bad)
	}
	for _, part := range []struct {
		name string
		c    Counts
	}{{"clients", r.Clients}, {"long-lived", r.LongLived}} {
		if len(part.c.Samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\nsamples (%s)\n", part.name)
		for _, k := range slices.Sorted(maps.Keys(part.c.Samples)) {
			for _, s := range part.c.Samples[k] {
				fmt.Fprintf(&b, "  %s: %s\n", k, s)
			}
		}
	}
	if r.Dir != "" {
		fmt.Fprintf(&b, "\nlogs kept in %s\n", r.Dir)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func offIfZero(d Duration) string {
	if d <= 0 {
		return "(off)"
	}
	return d.String()
}

func routes(m map[string]int64, total int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d (%.1f%%)", k, m[k], 100*float64(m[k])/float64(max(total, 1))))
	}
	return strings.Join(parts, ", ")
}

func fds(p ProcSample) string {
	if p.Err != "" && p.FDs <= 0 {
		return "n/a (" + p.Err + ")"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p.FDKinds)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, p.FDKinds[k]))
	}
	return fmt.Sprintf("%d (%s)", p.FDs, strings.Join(parts, ", "))
}

func fdsIf(p ProcSample, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%s, pid %d", fds(p), p.PID)
}

func goroutines(p ProcSample) string {
	if p.GoroutineSource == "" {
		return "n/a"
	}
	return fmt.Sprintf("%d (%s)", p.Goroutines, p.GoroutineSource)
}

func unionKeys[V any](a, b map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// Duration is a time.Duration that reads and writes as "1.5s" in JSON.
type Duration time.Duration

// String formats like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the time.Duration form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

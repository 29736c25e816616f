package bench

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// RTTPhase is one measured round-trip phase: connection setup plus one
// 64-byte round trip, n times, conc at a time, by one strategy.
type RTTPhase struct {
	Round        int       `json:"round"`
	Strategy     string    `json:"strategy"`
	Concurrency  int       `json:"concurrency"`
	Result       RTTResult `json:"result"`
	ConnsPerSec  float64   `json:"conns_per_s"`
	CPU          CPUSplit  `json:"cpu"`
	CPUPerConnNS float64   `json:"cpu_per_conn_ns"`
	Handoffs     uint64    `json:"broker_handoffs"`
	Fallbacks    uint64    `json:"broker_fallbacks"`
	// Counts are each process's context switches and read/write syscalls
	// during the phase, by process name (client, broker, backend, proxy).
	Counts map[string]ProcCounts `json:"proc_counts,omitempty"`
}

func (e *env) rttPhase(round int, s string, conc, n int) (RTTPhase, error) {
	p := RTTPhase{Round: round, Strategy: s, Concurrency: conc}
	args := append(e.strategyArgs(s), "--mode", "rtt", "--service", svcEcho,
		"--conns", strconv.Itoa(n), "--concurrency", strconv.Itoa(conc), "--warmup", strconv.Itoa(e.cfg.Warmup))
	run, err := e.runClient(fmt.Sprintf("client %s c=%d", s, conc), args...)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(run.line), &p.Result); err != nil {
		return p, fmt.Errorf("client %s c=%d: bad result %q: %w", s, conc, run.line, err)
	}
	if p.Result.N == 0 {
		return p, fmt.Errorf("client %s c=%d: every connection failed, first: %s", s, conc, p.Result.FirstError)
	}
	p.CPU, p.Counts, p.Handoffs, p.Fallbacks = run.cpu, run.counts, run.handoffs, run.fallbacks
	p.ConnsPerSec = float64(p.Result.N) / (float64(p.Result.ElapsedNS) / 1e9)
	p.CPUPerConnNS = float64(run.cpu.total()) / float64(p.Result.N)
	e.logf("  %-16s c=%-2d p50 %7.1fµs p99 %7.1fµs %8.0f conns/s %6.1f µs CPU/conn routes %v",
		s, conc, float64(p.Result.P50NS)/1e3, float64(p.Result.P99NS)/1e3, p.ConnsPerSec, p.CPUPerConnNS/1e3, p.Result.Routes)
	if p.Result.Errors > 0 {
		e.logf("  %s c=%d: %d connections failed, first: %s", s, conc, p.Result.Errors, p.Result.FirstError)
	}
	return p, nil
}

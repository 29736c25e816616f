package bench

import (
	"encoding/json"
	"fmt"
	"time"
)

// StreamPhase is one measured streaming phase: 1 MiB writes on one
// connection, echoed back.
type StreamPhase struct {
	Round    int          `json:"round"`
	Strategy string       `json:"strategy"`
	Result   StreamResult `json:"result"`
	MBps     float64      `json:"mb_per_s"`
	CPU      CPUSplit     `json:"cpu"`
}

func (e *env) streamPhase(round int, s string, d time.Duration) (StreamPhase, error) {
	p := StreamPhase{Round: round, Strategy: s}
	args := append(e.strategyArgs(s), "--mode", "stream", "--service", svcEcho,
		"--duration", d.String(), "--warmup", "20")
	run, err := e.runClient("stream client "+s, args...)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(run.line), &p.Result); err != nil {
		return p, fmt.Errorf("stream client %s: bad result %q: %w", s, run.line, err)
	}
	p.CPU = run.cpu
	p.MBps = float64(p.Result.Written) / 1e6 / (float64(p.Result.ElapsedNS) / 1e9)
	e.logf("  %-16s stream %8.0f MB/s (route %s)", s, p.MBps, p.Result.Route)
	return p, nil
}

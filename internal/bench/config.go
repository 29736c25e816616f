package bench

import (
	"errors"
	"time"
)

// Config is one run's configuration; it is printed with the results so a
// reader knows what was measured.
type Config struct {
	Rounds   int `json:"rounds"`
	ConnsC1  int `json:"conns_c1"`
	ConnsC16 int `json:"conns_c16"`
	// ConnsCurve is the measured connections per round at the concurrency
	// curve's other levels (4 and 64).
	ConnsCurve  int           `json:"conns_curve,omitempty"`
	Warmup      int           `json:"warmup"`
	Stream      time.Duration `json:"stream_ns"`
	ColdSamples int           `json:"cold_samples_per_round"`
	Herd        int           `json:"herd_hellos"`
	RSSConns    int           `json:"rss_conns"`
	RSSProcs    int           `json:"rss_client_processes"`
	Early       bool          `json:"early_rows"`
	Quick       bool          `json:"quick"`
	// ServeProcs and BackendProcs set GOMAXPROCS for the broker (serve
	// --procs) and the echo backends (their definition's env); 0 leaves
	// each process its default.
	ServeProcs   int `json:"serve_procs,omitempty"`
	BackendProcs int `json:"backend_procs,omitempty"`
}

// DefaultConfig is the configuration of a full default run.
func DefaultConfig() Config {
	return Config{Rounds: 5, ConnsC1: 5000, ConnsC16: 10000, ConnsCurve: 5000, Warmup: 200, Stream: 2 * time.Second,
		ColdSamples: 2, Herd: 64, RSSConns: 10000, RSSProcs: 4, Early: true}
}

// UsageError is an error in what the caller asked for (a flag or a
// configuration), as opposed to a failure while measuring.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Validate reports a configuration the bench cannot run.
func (c Config) Validate() error {
	if c.Rounds < 1 || c.ConnsC1 < 1 || c.ConnsC16 < 1 || c.ConnsCurve < 1 || c.Warmup < 0 || c.Stream <= 0 ||
		c.ColdSamples < 0 || c.Herd < 0 || c.RSSConns < 0 || c.RSSProcs < 1 || c.ServeProcs < 0 || c.BackendProcs < 0 {
		return &UsageError{errors.New("counts must be positive (cold, herd, rss-conns and the procs may be 0)")}
	}
	return nil
}

// highConc is the concurrency of the "c16" rows; the ratio names say 16.
const highConc = 16

// curveLevels are the concurrencies of the curve: every curve strategy is
// measured at each, the others at 1 and highConc only.
var curveLevels = []int{1, 4, highConc, 64}

// levels are the concurrencies strategy s is measured at.
func levels(s string) []int {
	switch s {
	case stratDirect, stratHandoff, stratReconnect, stratFastpath:
		return curveLevels
	}
	return []int{1, highConc}
}

// streamed reports whether strategy s has a streaming phase. The early
// rows differ from their plain ones only before the first byte, and the
// fast path is the direct socket.
func streamed(s string) bool {
	return s == stratDirect || s == stratHandoff || s == stratReconnect || s == stratProxy
}

// conns is the measured connections of one phase at concurrency conc.
func (c Config) conns(conc int) int {
	switch conc {
	case 1:
		return c.ConnsC1
	case highConc:
		return c.ConnsC16
	}
	return c.ConnsCurve
}

// Timeouts of the bench's own waits. They only catch a stuck process; no
// measured figure depends on them.
const (
	phaseTimeout   = 3 * time.Minute
	startupTimeout = 20 * time.Second
)

// Strategies the bench compares. Each names how a client reaches the echo
// backend; see dialer.
const (
	stratDirect         = "direct"          // net.Dial of backend_pipe
	stratHandoff        = "handoff"         // client.Dial with NoHelloSkip (a Hello every time)
	stratReconnect      = "reconnect"       // client.Dial with NoHandoff and NoHelloSkip
	stratFastpath       = "fastpath"        // client.Dial, default options, after one Dial filled its cache
	stratProxy          = "proxy"           // net.Dial of the bench's copying proxy
	stratHandoffEarly   = "handoff+early"   // client.Dial with NoHelloSkip and EarlyData
	stratReconnectEarly = "reconnect+early" // client.Dial with NoHandoff, NoHelloSkip and EarlyData
)

// strategyOrder is the order of the report's rows.
var strategyOrder = []string{stratDirect, stratHandoff, stratReconnect, stratFastpath, stratProxy, stratHandoffEarly, stratReconnectEarly}

// wantRoute is the route every connection of strategy s should take.
func wantRoute(s string) string {
	switch s {
	case stratHandoffEarly:
		return stratHandoff
	case stratReconnectEarly:
		return stratReconnect
	case stratFastpath:
		return stratDirect
	}
	return s
}

// payloadSize is the size of the request echoed in the round-trip phases.
const payloadSize = 64

// Commands of the portier binary the bench runs. The first two are the
// portier command's own; the others are this package's hidden commands,
// which the binary must register under these names.
const (
	cmdServe = "serve"
	cmdEcho  = "__echo-backend"
	// ClientCommand runs ClientMain: the load generator, one process per
	// measured phase.
	ClientCommand = "__bench-client"
	// ProxyCommand runs ProxyMain: a process copying bytes between a client
	// and the backend.
	ProxyCommand = "__bench-proxy"
	// StallCommand runs StallMain: a service command that never registers.
	StallCommand = "__bench-stall"
)

package bench

import (
	"errors"
	"time"
)

// Config is one run's configuration; it is printed with the results so a
// reader knows what was measured.
type Config struct {
	Rounds      int           `json:"rounds"`
	ConnsC1     int           `json:"conns_c1"`
	ConnsC16    int           `json:"conns_c16"`
	Warmup      int           `json:"warmup"`
	Stream      time.Duration `json:"stream_ns"`
	ColdSamples int           `json:"cold_samples_per_round"`
	Herd        int           `json:"herd_hellos"`
	RSSConns    int           `json:"rss_conns"`
	RSSProcs    int           `json:"rss_client_processes"`
	Early       bool          `json:"early_rows"`
	Quick       bool          `json:"quick"`
}

// DefaultConfig is the configuration of a full default run.
func DefaultConfig() Config {
	return Config{Rounds: 5, ConnsC1: 5000, ConnsC16: 10000, Warmup: 200, Stream: 2 * time.Second,
		ColdSamples: 2, Herd: 64, RSSConns: 10000, RSSProcs: 4, Early: true}
}

// UsageError is an error in what the caller asked for (a flag or a
// configuration), as opposed to a failure while measuring.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Validate reports a configuration the bench cannot run.
func (c Config) Validate() error {
	if c.Rounds < 1 || c.ConnsC1 < 1 || c.ConnsC16 < 1 || c.Warmup < 0 || c.Stream <= 0 ||
		c.ColdSamples < 0 || c.Herd < 0 || c.RSSConns < 0 || c.RSSProcs < 1 {
		return &UsageError{errors.New("counts must be positive (cold, herd and rss-conns may be 0)")}
	}
	return nil
}

// highConc is the concurrency of the "c16" rows; the ratio names say 16.
const highConc = 16

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
	stratHandoff        = "handoff"         // client.Dial, default options
	stratReconnect      = "reconnect"       // client.Dial with NoHandoff
	stratProxy          = "proxy"           // net.Dial of the bench's copying proxy
	stratHandoffEarly   = "handoff+early"   // client.Dial with EarlyData
	stratReconnectEarly = "reconnect+early" // client.Dial with NoHandoff and EarlyData
)

// strategyOrder is the order of the report's rows.
var strategyOrder = []string{stratDirect, stratHandoff, stratReconnect, stratProxy, stratHandoffEarly, stratReconnectEarly}

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

package soak

import (
	"errors"
	"io"
	"time"
)

// Config says what a soak runs and how hard. Zero fields take the default
// in brackets; a negative KillEvery, RestartEvery or LongLived turns that
// part off.
type Config struct {
	// Portier is the portier binary (run as serve, status and metrics).
	Portier string
	// Backend is the command line every service runs: a program that calls
	// Backend when RoleEnv is "echo" (or runs the role RoleEnv names).
	Backend []string
	// Duration is the time under load and chaos. Required.
	Duration time.Duration
	// Clients is the number of client goroutines [24].
	Clients int
	// RoundTrips is the number of requests per connection [3].
	RoundTrips int
	// HungAfter bounds each attempt: Dial and every round trip run under
	// one deadline this far from the attempt's start, and an attempt that
	// reaches it is hung [10s].
	HungAfter time.Duration
	// KillEvery is the period of SIGKILLs to the load service's backend [2s].
	KillEvery time.Duration
	// RestartEvery is the period of broker restarts, alternately by SIGTERM
	// and SIGKILL [10s].
	RestartEvery time.Duration
	// BrokerDownFor is the pause between a broker's exit and its
	// successor's start [200ms].
	BrokerDownFor time.Duration
	// LongLived is the number of long-lived connections to "steady" open at
	// a time [2].
	LongLived int
	// LongLivedFor is how long each long-lived connection lives, one request
	// a second [6s].
	LongLivedFor time.Duration
	// SteadyIdle is the idle_timeout of "steady", shorter than LongLivedFor
	// so that a broker that counts idleness from the last Hello quiesces a
	// backend under a live connection [3s].
	SteadyIdle time.Duration
	// Settle is the wait after the chaos before the final measurement: long
	// enough for re-adoption and the broker's periodic checks, and for its
	// idle connection workers to exit (10 s), so that goroutines compare
	// like with like [12s]; negative means none.
	Settle time.Duration
	// Service is the service the clients load ["echo"]; KillEvery kills
	// only echo backends.
	Service string
	// Extra services are defined besides echo and steady (a test's faulty
	// roles).
	Extra []Service
	// KeepDir keeps the soak's directory (broker and backend logs) and names
	// it in the report.
	KeepDir bool
	// Progress receives a line per chaos event and phase; nil discards.
	Progress io.Writer

	// watch, when set, is told each completed chaos event ("kill",
	// "restart SIGTERM", "restart SIGKILL"), so that a test can end the
	// load by cancelling Run's context once it has seen what it needs
	// instead of guessing a duration.
	watch func(event string)
	// unmeasured skips both quiet points (a test that only checks how
	// attempts are classified).
	unmeasured bool
}

// Service is a service definition the soak writes; every one runs
// Config.Backend with RoleEnv set to Role.
type Service struct {
	Name string
	Role string
	// IdleTimeout is the definition's idle_timeout; 0 keeps the broker's
	// default, negative means never.
	IdleTimeout time.Duration
}

// Service names the soak defines itself.
const (
	ServiceEcho   = "echo"
	ServiceSteady = "steady"
)

func (c Config) withDefaults() (Config, error) {
	if c.Portier == "" || len(c.Backend) == 0 {
		return c, errors.New("soak: Config.Portier and Config.Backend are required")
	}
	if c.Duration <= 0 {
		return c, errors.New("soak: Config.Duration must be positive")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	defInt(&c.Clients, 24)
	defInt(&c.RoundTrips, 3)
	defInt(&c.LongLived, 2)
	def(&c.HungAfter, 10*time.Second)
	def(&c.KillEvery, 2*time.Second)
	def(&c.RestartEvery, 10*time.Second)
	def(&c.BrokerDownFor, 200*time.Millisecond)
	def(&c.LongLivedFor, 6*time.Second)
	def(&c.SteadyIdle, 3*time.Second)
	def(&c.Settle, 12*time.Second)
	if c.Service == "" {
		c.Service = ServiceEcho
	}
	if c.Clients < 0 || c.RoundTrips < 1 {
		return c, errors.New("soak: Config.Clients and Config.RoundTrips must be positive")
	}
	c.LongLived = max(c.LongLived, 0)
	c.Settle = max(c.Settle, 0)
	return c, nil
}

func (c Config) settings() Settings {
	return Settings{
		Duration: Duration(c.Duration), Clients: c.Clients, RoundTrips: c.RoundTrips,
		HungAfter: Duration(c.HungAfter), KillEvery: Duration(max(c.KillEvery, 0)),
		RestartEvery: Duration(max(c.RestartEvery, 0)), BrokerDownFor: Duration(c.BrokerDownFor),
		LongLived: c.LongLived, LongLivedFor: Duration(c.LongLivedFor), SteadyIdle: Duration(c.SteadyIdle),
		Settle: Duration(c.Settle), Service: c.Service,
	}
}

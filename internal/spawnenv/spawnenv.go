// Package spawnenv owns the environment contract between the broker and
// the backends it starts: the names of the variables, how the broker encodes
// them for a child and how a backend decodes and validates them. It is the
// one place both sides agree on, so the broker does not import the backend
// package and the variable names are not part of any public API.
//
// The contract: a backend started by the broker finds PORTIER_SERVICE and
// PORTIER_VERSION (the definition it was started for), PORTIER_BROKER (the
// socket to register on), PORTIER_BACKEND_ENDPOINT (where it must listen),
// PORTIER_SPAWN_SECRET (the per-spawn secret, hex, that it presents when it
// registers) and, when the Hello that started it carried a valid one,
// TRACEPARENT (W3C trace context). The broker removes every inherited
// variable of this contract, and of systemd socket activation and readiness
// (LISTEN_*, NOTIFY_SOCKET, WATCHDOG_*), from the child's environment, so a
// child sees only the values the broker set. A backend removes the secret
// from its own environment once it has read it (FromProcess), so that the
// programs it starts do not inherit it.
package spawnenv

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/portier/portier/wire"
)

// The variables of the contract.
const (
	Service     = "PORTIER_SERVICE"          // service name
	Version     = "PORTIER_VERSION"          // version of the definition
	Broker      = "PORTIER_BROKER"           // broker socket to register on
	Endpoint    = "PORTIER_BACKEND_ENDPOINT" // where the backend must listen
	SpawnSecret = "PORTIER_SPAWN_SECRET"     // per-spawn secret, hex
	TraceParent = "TRACEPARENT"              // W3C trace context of the Hello that started it
)

// Env is what the broker tells a backend it starts.
type Env struct {
	Service     string
	Version     string
	Broker      string // the broker's socket
	Endpoint    string // the backend's own endpoint (backend_pipe)
	Secret      []byte // the spawn secret (32 random bytes from the broker)
	TraceParent string // "" when the Hello carried none
}

// Strip returns environ without the variables of this contract (PORTIER_*,
// TRACEPARENT) and of systemd socket activation (LISTEN_*), which the broker
// may have inherited from its own parent: a child must see only the values
// the broker sets for it. It also drops what systemd gives the broker's own
// unit for readiness and its watchdog (NOTIFY_SOCKET, WATCHDOG_*): a
// backend that speaks sd_notify would otherwise report its readiness as
// the broker's, which systemd refuses and logs.
func Strip(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if strings.HasPrefix(kv, "PORTIER_") || strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, TraceParent+"=") ||
			strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// Vars returns e as KEY=value entries for a child's environment.
func (e *Env) Vars() []string {
	vars := []string{
		Service + "=" + e.Service,
		Version + "=" + e.Version,
		Broker + "=" + e.Broker,
		Endpoint + "=" + e.Endpoint,
		SpawnSecret + "=" + hex.EncodeToString(e.Secret),
	}
	// The broker drops an invalid traceparent when it reads the Hello;
	// checked again here because a value that reaches the environment
	// unchecked can make exec fail (a NUL) and so lock the service for
	// everyone through the start budget.
	if e.TraceParent != "" && wire.ValidTraceparent(e.TraceParent) {
		vars = append(vars, TraceParent+"="+e.TraceParent)
	}
	return vars
}

// Decode reads the contract through getenv (os.Getenv, or a map in tests)
// and validates it. It returns nil, nil when PORTIER_BROKER is unset: the
// process was not started by a broker. An error names the variable at fault.
func Decode(getenv func(string) string) (*Env, error) {
	e := &Env{
		Service:     getenv(Service),
		Version:     getenv(Version),
		Broker:      getenv(Broker),
		Endpoint:    getenv(Endpoint),
		TraceParent: getenv(TraceParent),
	}
	if e.Broker == "" {
		return nil, nil
	}
	if !wire.ValidTraceparent(e.TraceParent) {
		e.TraceParent = "" // W3C: an invalid traceparent restarts the trace
	}
	raw := getenv(SpawnSecret)
	secret, err := hex.DecodeString(raw)
	switch {
	case raw == "":
		// FromProcess removes it: a program started by a backend inherits
		// the rest of the contract but is not the process the broker started.
		return nil, fmt.Errorf("%s is missing (a backend removes it once read: was this process started by a backend rather than by the broker?)", SpawnSecret)
	case err != nil:
		return nil, fmt.Errorf("%s must be hex", SpawnSecret)
	case !wire.ValidServiceName(e.Service):
		return nil, fmt.Errorf("%s=%q is not a service name", Service, e.Service)
	case !wire.ValidVersion(e.Version):
		return nil, fmt.Errorf("%s=%q is not a version", Version, e.Version)
	case e.Endpoint == "":
		return nil, fmt.Errorf("%s is empty", Endpoint)
	}
	e.Secret = secret
	return e, nil
}

// FromProcess decodes this process's environment (Decode) and removes the
// spawn secret from it, whether or not the rest is valid: the secret is for
// this process alone, and the programs it starts inherit its environment.
func FromProcess() (*Env, error) {
	e, err := Decode(os.Getenv)
	if _, ok := os.LookupEnv(SpawnSecret); ok {
		if uerr := os.Unsetenv(SpawnSecret); uerr != nil && err == nil {
			err = fmt.Errorf("remove %s from the environment: %w", SpawnSecret, uerr)
		}
	}
	return e, err
}

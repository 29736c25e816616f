package backend

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portier/portier/internal/spawnenv"
)

// clearBrokerEnv removes the broker environment for the test (t.Setenv
// restores it afterwards, and makes the test non-parallel as it must be:
// Listen reads the process environment).
func clearBrokerEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{spawnenv.Service, spawnenv.Version, spawnenv.Broker, spawnenv.Endpoint, spawnenv.SpawnSecret, spawnenv.TraceParent} {
		t.Setenv(k, "")
	}
}

func TestListenWithoutAddress(t *testing.T) {
	clearBrokerEnv(t)
	l, err := Listen(context.Background())
	if !errors.Is(err, ErrNoAddress) {
		t.Fatalf("Listen without broker environment or Address: %v, %v; want ErrNoAddress", l, err)
	}
}

func TestListenBadEnvironment(t *testing.T) {
	good := map[string]string{
		spawnenv.Service:     "echo",
		spawnenv.Version:     "1.2.3",
		spawnenv.Broker:      "/nonexistent/portier/broker.sock",
		spawnenv.Endpoint:    "/nonexistent/portier/be.sock",
		spawnenv.SpawnSecret: "00112233445566778899aabbccddeeff",
	}
	for _, tc := range []struct {
		name, key, value, mention string
	}{
		{"secret not hex", spawnenv.SpawnSecret, "not-hex", spawnenv.SpawnSecret},
		{"secret odd length", spawnenv.SpawnSecret, "abc", spawnenv.SpawnSecret},
		{"secret empty", spawnenv.SpawnSecret, "", spawnenv.SpawnSecret},
		{"service uppercase", spawnenv.Service, "Echo", spawnenv.Service},
		{"service empty", spawnenv.Service, "", spawnenv.Service},
		{"version not semver", spawnenv.Version, "1.2", spawnenv.Version},
		{"version empty", spawnenv.Version, "", spawnenv.Version},
		{"endpoint empty", spawnenv.Endpoint, "", spawnenv.Endpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range good {
				t.Setenv(k, v)
			}
			t.Setenv(tc.key, tc.value)
			// The Address option does not rescue a malformed broker
			// environment: a backend the broker started must not silently
			// run standalone.
			l, err := Listen(context.Background(), Address("/nonexistent/portier/standalone.sock"))
			if !errors.Is(err, ErrBadEnvironment) {
				t.Fatalf("Listen: %v, %v; want ErrBadEnvironment", l, err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not name %s", err, tc.mention)
			}
		})
	}
}

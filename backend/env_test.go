package backend

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// clearBrokerEnv removes the broker environment for the test (t.Setenv
// restores it afterwards, and makes the test non-parallel as it must be:
// Listen reads the process environment).
func clearBrokerEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{EnvService, EnvVersion, EnvBroker, EnvEndpoint, EnvSpawnSecret, EnvTraceParent} {
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
		EnvService:     "echo",
		EnvVersion:     "1.2.3",
		EnvBroker:      "/nonexistent/portier/broker.sock",
		EnvEndpoint:    "/nonexistent/portier/be.sock",
		EnvSpawnSecret: "00112233445566778899aabbccddeeff",
	}
	for _, tc := range []struct {
		name, key, value, mention string
	}{
		{"secret not hex", EnvSpawnSecret, "not-hex", EnvSpawnSecret},
		{"secret odd length", EnvSpawnSecret, "abc", EnvSpawnSecret},
		{"secret empty", EnvSpawnSecret, "", EnvSpawnSecret},
		{"service uppercase", EnvService, "Echo", EnvService},
		{"service empty", EnvService, "", EnvService},
		{"version not semver", EnvVersion, "1.2", EnvVersion},
		{"version empty", EnvVersion, "", EnvVersion},
		{"endpoint empty", EnvEndpoint, "", EnvEndpoint},
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

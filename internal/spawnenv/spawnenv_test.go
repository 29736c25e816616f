package spawnenv

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"
)

func lookup(vars []string) func(string) string {
	m := map[string]string{}
	for _, kv := range vars {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return func(k string) string { return m[k] }
}

// TestRoundTrip: what the broker encodes, a backend decodes unchanged.
func TestRoundTrip(t *testing.T) {
	for _, tp := range []string{"", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"} {
		in := Env{Service: "echo", Version: "1.2.3-rc.1", Broker: "/run/p/broker.sock", Endpoint: "/run/p/be-1.sock",
			Secret: bytes.Repeat([]byte{0xab}, 32), TraceParent: tp}
		vars := in.Vars()
		if has := slices.ContainsFunc(vars, func(kv string) bool { return strings.HasPrefix(kv, TraceParent+"=") }); has != (tp != "") {
			t.Errorf("traceparent %q: TRACEPARENT entry present = %v", tp, has)
		}
		out, err := Decode(lookup(vars))
		if err != nil {
			t.Fatal(err)
		}
		if out.Service != in.Service || out.Version != in.Version || out.Broker != in.Broker ||
			out.Endpoint != in.Endpoint || !bytes.Equal(out.Secret, in.Secret) || out.TraceParent != in.TraceParent {
			t.Fatalf("decoded %+v, want %+v", out, in)
		}
	}
}

// TestInvalidTraceParentNeverPassedOn: an invalid traceparent (a NUL, which
// would make exec fail, or any other W3C violation) is neither put in a
// child's environment nor read from one.
func TestInvalidTraceParentNeverPassedOn(t *testing.T) {
	const valid = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tp := range []string{valid[:20] + "\x00" + valid[21:], strings.ToUpper(valid), valid + "-x", "garbage"} {
		in := Env{Service: "echo", Version: "1.0.0", Broker: "/b", Endpoint: "/e", Secret: []byte{1}, TraceParent: tp}
		vars := in.Vars()
		if slices.ContainsFunc(vars, func(kv string) bool { return strings.HasPrefix(kv, TraceParent+"=") }) {
			t.Errorf("traceparent %q put in the environment", tp)
		}
		out, err := Decode(lookup(append(vars, TraceParent+"="+tp)))
		if err != nil || out.TraceParent != "" {
			t.Errorf("traceparent %q read back as %q (%v)", tp, traceOf(out), err)
		}
	}
}

// TestStrip: inherited contract and socket-activation variables never reach
// a child; everything else does.
func TestStrip(t *testing.T) {
	in := []string{"HOME=/h", "PORTIER_SPAWN_SECRET=00", "PORTIER_SOCKET=/s", "LISTEN_FDS=1", "LISTEN_PID=7",
		"TRACEPARENT=x", "TRACEPARENT_NOT=kept", "NOTIFY_SOCKET=/run/user/1/systemd/notify", "WATCHDOG_USEC=1000000",
		"NOTIFY_SOCKETS=kept", "PATH=/bin"}
	want := []string{"HOME=/h", "TRACEPARENT_NOT=kept", "NOTIFY_SOCKETS=kept", "PATH=/bin"}
	if got := Strip(in); !slices.Equal(got, want) {
		t.Fatalf("Strip = %q, want %q", got, want)
	}
}

// TestDecodeWithoutBroker: no PORTIER_BROKER means no broker started us.
func TestDecodeWithoutBroker(t *testing.T) {
	e, err := Decode(lookup([]string{Service + "=echo"}))
	if e != nil || err != nil {
		t.Fatalf("Decode = %v, %v; want nil, nil", e, err)
	}
}

// TestDecodeRejects: every malformed variable is refused, and the error
// names it.
func TestDecodeRejects(t *testing.T) {
	good := (&Env{Service: "echo", Version: "1.2.3", Broker: "/b.sock", Endpoint: "/e.sock", Secret: []byte{1, 2}}).Vars()
	for _, tc := range []struct{ name, key, value string }{
		{"secret not hex", SpawnSecret, "not-hex"},
		{"secret odd length", SpawnSecret, "abc"},
		{"secret missing", SpawnSecret, ""},
		{"service uppercase", Service, "Echo"},
		{"service empty", Service, ""},
		{"version not semver", Version, "1.2"},
		{"version empty", Version, ""},
		{"endpoint empty", Endpoint, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := append(slices.Clone(good), tc.key+"="+tc.value)
			e, err := Decode(lookup(vars))
			if err == nil || e != nil {
				t.Fatalf("Decode = %v, %v; want an error", e, err)
			}
			if !strings.Contains(err.Error(), tc.key) {
				t.Errorf("error %q does not name %s", err, tc.key)
			}
		})
	}
}

// TestFromProcessRemovesSecret: once read, the secret is gone from the
// process environment, also when the rest of the contract is malformed.
func TestFromProcessRemovesSecret(t *testing.T) {
	for _, service := range []string{"echo", "Not-Valid"} {
		for kv := range slices.Values((&Env{Service: service, Version: "1.2.3", Broker: "/b.sock", Endpoint: "/e.sock", Secret: []byte{7}}).Vars()) {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		e, err := FromProcess()
		if (err == nil) != (service == "echo") || (e != nil && !bytes.Equal(e.Secret, []byte{7})) {
			t.Fatalf("service %q: FromProcess = %+v, %v", service, e, err)
		}
		if v, ok := os.LookupEnv(SpawnSecret); ok {
			t.Fatalf("service %q: %s is still set (%q)", service, SpawnSecret, v)
		}
	}
}

func traceOf(e *Env) string {
	if e == nil {
		return ""
	}
	return e.TraceParent
}

package wire_test

import (
	"regexp"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// The rules of docs/PROTOCOL.md as regular expressions: the hand-written
// validators must agree with them exactly (leading zeros included, which
// the version pattern allows).
var (
	serviceNameRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	versionRE     = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$`)
)

func specServiceName(s string) bool { return serviceNameRE.MatchString(s) }
func specVersion(s string) bool     { return len(s) <= wire.MaxVersion && versionRE.MatchString(s) }

// TestValidateHello is the table of Hello rules: each case changes the
// valid sample Hello (peer_pid 4242, kernel pid 4242) and names the
// ErrorCode and offending field, or expects acceptance.
func TestValidateHello(t *testing.T) {
	const (
		accepted    = pb.ErrorCode_ERROR_CODE_UNSPECIFIED
		rejected    = pb.ErrorCode_ERROR_PEER_REJECTED
		unsupported = pb.ErrorCode_ERROR_VERSION_UNSUPPORTED
	)
	rep := strings.Repeat
	cases := []struct {
		name  string
		mod   func(h *pb.Hello, kernelPID *int)
		code  pb.ErrorCode
		field string
	}{
		{"sample", func(*pb.Hello, *int) {}, accepted, ""},
		{"minimal", func(h *pb.Hello, _ *int) {
			*h = pb.Hello{ServiceName: "a", WantedVersion: "0.0.0", ClientMaxProtocol: 1}
		}, accepted, ""},
		{"minimal without a version", func(h *pb.Hello, _ *int) { *h = pb.Hello{ServiceName: "a", ClientMaxProtocol: 1} }, rejected, "wanted_version"},

		// service_name: [a-z0-9-]{1,64}
		{"name 64 chars", func(h *pb.Hello, _ *int) { h.ServiceName = rep("a", 64) }, accepted, ""},
		{"name 65 chars", func(h *pb.Hello, _ *int) { h.ServiceName = rep("a", 65) }, rejected, "service_name"},
		{"name empty", func(h *pb.Hello, _ *int) { h.ServiceName = "" }, rejected, "service_name"},
		{"name uppercase", func(h *pb.Hello, _ *int) { h.ServiceName = "Echo" }, rejected, "service_name"},
		{"name all uppercase", func(h *pb.Hello, _ *int) { h.ServiceName = "ECHO" }, rejected, "service_name"},
		{"name NUL byte", func(h *pb.Hello, _ *int) { h.ServiceName = "ec\x00ho" }, rejected, "service_name"},
		{"name underscore", func(h *pb.Hello, _ *int) { h.ServiceName = "echo_svc" }, rejected, "service_name"},
		{"name dot", func(h *pb.Hello, _ *int) { h.ServiceName = "echo.svc" }, rejected, "service_name"},
		{"name slash", func(h *pb.Hello, _ *int) { h.ServiceName = "../echo" }, rejected, "service_name"},
		{"name space", func(h *pb.Hello, _ *int) { h.ServiceName = "echo " }, rejected, "service_name"},
		{"name newline", func(h *pb.Hello, _ *int) { h.ServiceName = "echo\n" }, rejected, "service_name"},
		{"name non-ASCII", func(h *pb.Hello, _ *int) { h.ServiceName = "écho" }, rejected, "service_name"},
		{"name digits and dashes", func(h *pb.Hello, _ *int) { h.ServiceName = "-0-9-" }, accepted, ""},

		// wanted_version: ^[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$, at most 64
		// v1 requires it: an empty one is not "the configured one".
		{"version empty", func(h *pb.Hello, _ *int) { h.WantedVersion = "" }, rejected, "wanted_version"},
		{"version empty with CapAnyVersion", func(h *pb.Hello, _ *int) { h.WantedVersion, h.ClientCapabilities = "", wire.CapAnyVersion }, rejected, "wanted_version"},
		{"AnyVersion with CapAnyVersion", func(h *pb.Hello, _ *int) { h.WantedVersion, h.ClientCapabilities = wire.AnyVersion, wire.CapAnyVersion }, accepted, ""},
		{"version 0.0.0", func(h *pb.Hello, _ *int) { h.WantedVersion = "0.0.0" }, accepted, ""},
		{"version leading zeros (the pattern allows them)", func(h *pb.Hello, _ *int) { h.WantedVersion = "01.002.0003" }, accepted, ""},
		{"version big numbers", func(h *pb.Hello, _ *int) { h.WantedVersion = "12345678901234567890.1.2" }, accepted, ""},
		{"version prerelease", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-rc.1" }, accepted, ""},
		{"version prerelease of a dot (the pattern allows it)", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-." }, accepted, ""},
		{"version 64 chars", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-" + rep("a", 58) }, accepted, ""},
		{"version 65 chars", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-" + rep("a", 59) }, rejected, "wanted_version"},
		{"version 65 digits", func(h *pb.Hello, _ *int) { h.WantedVersion = rep("1", 61) + ".2.3" }, rejected, "wanted_version"},
		{"version 1.2", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2" }, rejected, "wanted_version"},
		{"version 1", func(h *pb.Hello, _ *int) { h.WantedVersion = "1" }, rejected, "wanted_version"},
		{"version trailing dash", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-" }, rejected, "wanted_version"},
		{"version v prefix", func(h *pb.Hello, _ *int) { h.WantedVersion = "v1.2.3" }, rejected, "wanted_version"},
		{"version uppercase prerelease", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3-RC1" }, rejected, "wanted_version"},
		{"version four parts", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3.4" }, rejected, "wanted_version"},
		{"version build metadata", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3+build" }, rejected, "wanted_version"},
		{"version empty part", func(h *pb.Hello, _ *int) { h.WantedVersion = "1..3" }, rejected, "wanted_version"},
		{"version trailing dot", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3." }, rejected, "wanted_version"},
		{"version double dash", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3--a" }, rejected, "wanted_version"},
		{"version trailing newline", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3\n" }, rejected, "wanted_version"},
		{"version leading space", func(h *pb.Hello, _ *int) { h.WantedVersion = " 1.2.3" }, rejected, "wanted_version"},
		{"version NUL", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.3\x00" }, rejected, "wanted_version"},
		{"version non-ASCII digit", func(h *pb.Hello, _ *int) { h.WantedVersion = "1.2.٣" }, rejected, "wanted_version"},

		// Length caps of informational fields.
		{"client_version 128", func(h *pb.Hello, _ *int) { h.ClientVersion = rep("v", 128) }, accepted, ""},
		{"client_version 129", func(h *pb.Hello, _ *int) { h.ClientVersion = rep("v", 129) }, rejected, "client_version"},
		{"client_lib_name 64", func(h *pb.Hello, _ *int) { h.ClientLibName = rep("n", 64) }, accepted, ""},
		{"client_lib_name 65", func(h *pb.Hello, _ *int) { h.ClientLibName = rep("n", 65) }, rejected, "client_lib_name"},
		{"client_lib_version 64", func(h *pb.Hello, _ *int) { h.ClientLibVersion = rep("1", 64) }, accepted, ""},
		{"client_lib_version 65", func(h *pb.Hello, _ *int) { h.ClientLibVersion = rep("1", 65) }, rejected, "client_lib_version"},
		{"request_id 128", func(h *pb.Hello, _ *int) { h.RequestId = rep("r", 128) }, accepted, ""},
		{"request_id 129", func(h *pb.Hello, _ *int) { h.RequestId = rep("r", 129) }, rejected, "request_id"},
		{"auth_token 4096", func(h *pb.Hello, _ *int) { h.AuthToken = make([]byte, 4096) }, accepted, ""},
		{"auth_token 4097", func(h *pb.Hello, _ *int) { h.AuthToken = make([]byte, 4097) }, rejected, "auth_token"},
		{"peer_attestation_nonce 4097", func(h *pb.Hello, _ *int) { h.PeerAttestationNonce = make([]byte, 4097) }, rejected, "peer_attestation_nonce"},
		{"capability_token 4097", func(h *pb.Hello, _ *int) { h.CapabilityToken = make([]byte, 4097) }, rejected, "capability_token"},

		// connection_id and peer_pid.
		{"nonzero connection_id", func(h *pb.Hello, _ *int) { h.ConnectionId = 1 }, rejected, "connection_id"},
		{"pid mismatch", func(h *pb.Hello, k *int) { *k = 4243 }, rejected, "peer_pid"},
		{"pid 2^32-1 does not alias -1", func(h *pb.Hello, k *int) { h.PeerPid = 1<<32 - 1; *k = -1 }, rejected, "peer_pid"},
		{"pid 2^32-1 vs a real pid", func(h *pb.Hello, k *int) { h.PeerPid = 1<<32 - 1 }, rejected, "peer_pid"},
		{"pid 0 is not a claim", func(h *pb.Hello, k *int) { h.PeerPid = 0; *k = 4243 }, accepted, ""},
		{"kernel pid unknown", func(h *pb.Hello, k *int) { *k = 0 }, accepted, ""},
		{"both unknown", func(h *pb.Hello, k *int) { h.PeerPid = 0; *k = 0 }, accepted, ""},

		// Protocol negotiation: the broker speaks 1.
		{"min 0 max 1", func(h *pb.Hello, _ *int) { h.ClientMinProtocol = 0 }, accepted, ""},
		{"min 1 max 9", func(h *pb.Hello, _ *int) { h.ClientMaxProtocol = 9 }, accepted, ""},
		{"min > max", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol = 2, 1 }, unsupported, "client_min_protocol"},
		{"min > max, both past 1", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol = 3, 2 }, unsupported, "client_min_protocol"},
		{"max < 1", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol = 0, 0 }, unsupported, "client_max_protocol"},
		{"min > 1", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol = 2, 3 }, unsupported, "client_max_protocol"},

		// Fields without rules.
		{"unknown capability bits", func(h *pb.Hello, _ *int) { h.ClientCapabilities = ^uint64(0) }, accepted, ""},
		{"no capabilities", func(h *pb.Hello, _ *int) { h.ClientCapabilities = 0 }, accepted, ""},
		{"huge keepalive", func(h *pb.Hello, _ *int) { h.ClientKeepaliveSecs = ^uint64(0) }, accepted, ""},

		// Several violations: the first in check order is reported.
		{"name before version", func(h *pb.Hello, _ *int) { h.ServiceName, h.WantedVersion = "ECHO", "v1" }, rejected, "service_name"},
		{"version before lengths", func(h *pb.Hello, _ *int) { h.WantedVersion, h.ClientVersion = "v1", rep("v", 200) }, rejected, "wanted_version"},
		{"lengths before connection_id", func(h *pb.Hello, _ *int) { h.ClientLibName, h.ConnectionId = rep("n", 65), 5 }, rejected, "client_lib_name"},
		{"connection_id before pid", func(h *pb.Hello, k *int) { h.ConnectionId = 5; *k = 1 }, rejected, "connection_id"},
		// The protocol range comes first: a client of another protocol
		// version is told so, whatever else its Hello holds.
		{"protocol before pid", func(h *pb.Hello, k *int) { h.ClientMinProtocol, h.ClientMaxProtocol = 2, 2; *k = 1 }, unsupported, "client_max_protocol"},
		{"protocol before name", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol, h.ServiceName = 2, 2, "NOT valid" }, unsupported, "client_max_protocol"},
		{"protocol before version", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol, h.WantedVersion = 2, 2, "" }, unsupported, "client_max_protocol"},
		{"protocol of an empty Hello", func(h *pb.Hello, _ *int) { *h = pb.Hello{} }, unsupported, "client_max_protocol"},
		{"min > max before name", func(h *pb.Hello, _ *int) { h.ClientMinProtocol, h.ClientMaxProtocol, h.ServiceName = 1, 0, "" }, unsupported, "client_min_protocol"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := sampleHello()
			kernelPID := 4242
			c.mod(h, &kernelPID)

			// Name and version cases must agree with the spec's patterns.
			if name := h.GetServiceName(); wire.ValidServiceName(name) != specServiceName(name) {
				t.Errorf("ValidServiceName(%q) disagrees with %s", name, serviceNameRE)
			}
			if v := h.GetWantedVersion(); wire.ValidVersion(v) != specVersion(v) {
				t.Errorf("ValidVersion(%q) disagrees with %s", v, versionRE)
			}

			r := wire.ValidateHello(h, kernelPID)
			if c.code == accepted {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				return
			}
			if r == nil {
				t.Fatalf("accepted, want %v on %s", c.code, c.field)
			}
			if r.GetCode() != c.code || r.GetDetails()["field"] != c.field || len(r.GetDetails()) != 1 {
				t.Errorf("got %v on %v, want %v on %s", r.GetCode(), r.GetDetails(), c.code, c.field)
			}
			if !strings.Contains(r.GetReason(), c.field) {
				t.Errorf("reason %q does not name the field %s", r.GetReason(), c.field)
			}
			if r.GetDaemonMinProtocol() != wire.ProtocolVersion || r.GetDaemonMaxProtocol() != wire.ProtocolVersion || r.GetRetryAfterMs() != 0 {
				t.Errorf("refusal does not advertise protocol %d or asks for a retry: %v", wire.ProtocolVersion, r)
			}
			// The refusal is sendable: peer bytes quoted in the reason keep
			// it valid UTF-8.
			if _, err := wire.Marshal(&pb.HelloReply{Result: &pb.HelloReply_Refused{Refused: r}}); err != nil {
				t.Errorf("refusal cannot be encoded: %v", err)
			}
		})
	}
}

func TestValidateHelloNil(t *testing.T) {
	r := wire.ValidateHello(nil, 0)
	if r == nil || r.GetCode() != pb.ErrorCode_ERROR_VERSION_UNSUPPORTED || r.GetDetails()["field"] != "client_max_protocol" {
		t.Errorf("ValidateHello(nil) = %v", r)
	}
}

// TestValidateHelloFitsCap: a Hello at every length cap still fits in the
// first-frame cap, so a valid Hello is never refused for its size.
func TestValidateHelloFitsCap(t *testing.T) {
	h := &pb.Hello{
		ClientMinProtocol:    ^uint32(0) - 1,
		ClientMaxProtocol:    ^uint32(0),
		ServiceName:          strings.Repeat("s", wire.MaxServiceName),
		WantedVersion:        "1.2.3-" + strings.Repeat("a", wire.MaxVersion-6),
		ClientVersion:        strings.Repeat("v", wire.MaxClientVersion),
		ClientCapabilities:   ^uint64(0),
		AuthToken:            make([]byte, wire.MaxOpaqueHelloField),
		RequestId:            strings.Repeat("r", wire.MaxRequestID),
		PeerPid:              ^uint32(0),
		ClientLibName:        strings.Repeat("n", wire.MaxClientLib),
		ClientLibVersion:     strings.Repeat("n", wire.MaxClientLib),
		PeerAttestationNonce: make([]byte, wire.MaxOpaqueHelloField),
		CapabilityToken:      make([]byte, wire.MaxOpaqueHelloField),
		ClientKeepaliveSecs:  ^uint64(0),
	}
	f, err := wire.NewRequest(wire.ProtocolControl, ^uint64(0), h)
	if err != nil {
		t.Fatal(err)
	}
	f.Traceparent = sampleTraceparent
	if size := proto.Size(f); size > wire.MaxHelloBody {
		t.Errorf("a Hello at every cap is %d bytes, over the %d-byte first-frame cap", size, wire.MaxHelloBody)
	}
}

func TestValidServiceNameAndVersion(t *testing.T) {
	names := []string{"", "a", "-", "0", "echo", "my-svc-2", "Echo", "e_cho", "e.cho", "é", "a\x00", strings.Repeat("z", 64), strings.Repeat("z", 65), "\xff"}
	for _, s := range names {
		if got, want := wire.ValidServiceName(s), specServiceName(s); got != want {
			t.Errorf("ValidServiceName(%q) = %v, pattern says %v", s, got, want)
		}
	}
	versions := []string{"", "1", "1.2", "1.2.3", "01.2.3", "1.2.3-", "1.2.3-a", "1.2.3-a.b.0", "1.2.3-A", "1.2.3-a-b",
		"1.2.3-.", "-1.2.3", ".1.2.3", "1.2.3 ", "1.2.3\n", "v1.2.3", "1.2.x", "a.b.c", "1.2.3.4", "1.2.3+x",
		strings.Repeat("9", 60) + ".1.2", strings.Repeat("9", 61) + ".1.2", "1.2.3-" + strings.Repeat("a", 59)}
	for _, s := range versions {
		if got, want := wire.ValidVersion(s), specVersion(s); got != want {
			t.Errorf("ValidVersion(%q) = %v, pattern says %v", s, got, want)
		}
	}
}

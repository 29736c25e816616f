package wire

import (
	"fmt"

	pb "github.com/portier/portier/wire/portierv1"
)

// String caps of Hello fields. Service name and version caps are part of
// the v1 interface; the caps on opaque fields are portier's, sized so a
// Hello always fits in MaxHelloBody.
const (
	MaxServiceName      = 64
	MaxVersion          = 64
	MaxClientVersion    = 128
	MaxClientLib        = 64
	MaxRequestID        = 128
	MaxOpaqueHelloField = 4096
)

// ValidServiceName reports whether s matches [a-z0-9-]{1,64}.
func ValidServiceName(s string) bool {
	if len(s) == 0 || len(s) > MaxServiceName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidVersion reports whether s matches
// ^[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$ and is at most 64 bytes.
func ValidVersion(s string) bool {
	if len(s) == 0 || len(s) > MaxVersion {
		return false
	}
	i := 0
	for part := 0; part < 3; part++ {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
		if part < 2 {
			if i >= len(s) || s[i] != '.' {
				return false
			}
			i++
		}
	}
	if i == len(s) {
		return true
	}
	if s[i] != '-' || i+1 == len(s) {
		return false
	}
	for i++; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.') {
			return false
		}
	}
	return true
}

func violation(code pb.ErrorCode, field, format string, args ...any) *pb.Refused {
	return (&Violation{Code: code, Field: field, Reason: fmt.Sprintf(format, args...)}).Refused()
}

// ValidateHello checks every field of h and negotiates the protocol. It
// returns nil when h is acceptable, else a ready-to-send Refused with a
// stable code and a reason naming the field. kernelPID is the peer pid the
// kernel reported, 0 when unknown.
//
// The protocol range is checked first, so a client of another protocol
// version is told VERSION_UNSUPPORTED whatever else its Hello holds (a
// later protocol may well have other rules for the other fields). Then, in
// order: service_name, wanted_version (required: v1 has no "any version"
// value; see CapAnyVersion), the length caps, connection_id and peer_pid;
// each of those is PEER_REJECTED.
func ValidateHello(h *pb.Hello, kernelPID int) *pb.Refused {
	const rej = pb.ErrorCode_ERROR_PEER_REJECTED
	minP, maxP := h.GetClientMinProtocol(), h.GetClientMaxProtocol()
	if minP > maxP {
		return violation(pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, "client_min_protocol",
			"client_min_protocol %d is greater than client_max_protocol %d", minP, maxP)
	}
	if minP > ProtocolVersion || maxP < ProtocolVersion {
		return violation(pb.ErrorCode_ERROR_VERSION_UNSUPPORTED, "client_max_protocol",
			"client_min_protocol..client_max_protocol is %d..%d; this broker speaks protocol %d", minP, maxP, ProtocolVersion)
	}
	switch name := h.GetServiceName(); {
	case name == "":
		return violation(rej, "service_name", "service_name is empty; name the service to connect to")
	case len(name) > MaxServiceName:
		return violation(rej, "service_name", "service_name is %d bytes; at most %d are allowed", len(name), MaxServiceName)
	case !ValidServiceName(name):
		return violation(rej, "service_name", "service_name %q must match [a-z0-9-]{1,64} (lowercase letters, digits, '-')", name)
	}
	switch v := h.GetWantedVersion(); {
	case v == "":
		return violation(rej, "wanted_version", "wanted_version is empty; name the version you want as MAJOR.MINOR.PATCH[-prerelease]")
	case len(v) > MaxVersion:
		return violation(rej, "wanted_version", "wanted_version is %d bytes; at most %d are allowed", len(v), MaxVersion)
	case !ValidVersion(v):
		return violation(rej, "wanted_version", "wanted_version %q is not a version of the form MAJOR.MINOR.PATCH[-prerelease]", v)
	}
	for _, f := range []struct {
		name string
		n    int
		max  int
	}{
		{"client_version", len(h.GetClientVersion()), MaxClientVersion},
		{"client_lib_name", len(h.GetClientLibName()), MaxClientLib},
		{"client_lib_version", len(h.GetClientLibVersion()), MaxClientLib},
		{"request_id", len(h.GetRequestId()), MaxRequestID},
		{"auth_token", len(h.GetAuthToken()), MaxOpaqueHelloField},
		{"peer_attestation_nonce", len(h.GetPeerAttestationNonce()), MaxOpaqueHelloField},
		{"capability_token", len(h.GetCapabilityToken()), MaxOpaqueHelloField},
	} {
		if f.n > f.max {
			return violation(rej, f.name, "%s is %d bytes; at most %d are allowed", f.name, f.n, f.max)
		}
	}
	if h.GetConnectionId() != 0 {
		return violation(rej, "connection_id", "connection_id must be 0 in a Hello; the broker assigns it")
	}
	if p := h.GetPeerPid(); p != 0 && kernelPID != 0 && int64(p) != int64(kernelPID) {
		return violation(rej, "peer_pid", "peer_pid %d does not match the connecting process (pid %d)", p, kernelPID)
	}
	return nil
}

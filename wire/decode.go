package wire

import (
	"fmt"

	pb "github.com/portier/portier/wire/portierv1"
	"google.golang.org/protobuf/proto"
)

// Caps of Register fields. A spawn secret from the broker is 32 bytes; an
// endpoint is a socket path (at most 108 bytes) or a pipe name (256).
const (
	MaxSpawnSecret = 64
	MaxEndpoint    = 1024
)

func rejected(field, format string, args ...any) *Violation {
	return &Violation{Code: pb.ErrorCode_ERROR_PEER_REJECTED, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodeBackendControl unmarshals and validates a backend control payload
// (payload protocol 0xF001): exactly one message is set, and a Register
// carries a well-formed service name and version, an endpoint and a spawn
// secret within their caps. Whether the registering process is the one the
// broker started is the broker's check, not this one. Errors are *Violation.
func DecodeBackendControl(payload []byte) (*pb.BackendControl, error) {
	m := new(pb.BackendControl)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, rejected("", "malformed backend control message: %v", err)
	}
	switch msg := m.GetMsg().(type) {
	case nil:
		return nil, rejected("msg", "backend control message carries none of register, register_reply, quiesce, unregister, connection_report")
	case *pb.BackendControl_Register:
		r := msg.Register
		switch {
		case !ValidServiceName(r.GetServiceName()):
			return nil, rejected("service_name", "Register service_name %q must match [a-z0-9-]{1,64}", r.GetServiceName())
		case !ValidVersion(r.GetVersion()):
			return nil, rejected("version", "Register version %q is not of the form MAJOR.MINOR.PATCH[-prerelease]", r.GetVersion())
		case r.GetEndpoint() == "" || len(r.GetEndpoint()) > MaxEndpoint:
			return nil, rejected("endpoint", "Register endpoint is %d bytes; it must be 1 to %d", len(r.GetEndpoint()), MaxEndpoint)
		case len(r.GetSpawnSecret()) == 0 || len(r.GetSpawnSecret()) > MaxSpawnSecret:
			return nil, rejected("spawn_secret", "Register spawn_secret is %d bytes; it must be 1 to %d", len(r.GetSpawnSecret()), MaxSpawnSecret)
		}
	}
	return m, nil
}

// DecodeAdminRequest unmarshals an admin request (payload protocol 0xAD01)
// and checks that it names a verb this implementation knows (an unknown one
// decodes as no verb), and that a verb about a service (stop, restart,
// logs) names a well-formed one, and logs a well-formed version if any.
// Errors are *Violation.
func DecodeAdminRequest(payload []byte) (*pb.AdminRequest, error) {
	m := new(pb.AdminRequest)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, rejected("", "malformed admin request: %v", err)
	}
	var service string
	switch v := m.GetVerb().(type) {
	case nil:
		return nil, rejected("", "unknown admin verb")
	case *pb.AdminRequest_Stop:
		service = v.Stop.GetServiceName()
	case *pb.AdminRequest_Restart:
		service = v.Restart.GetServiceName()
	case *pb.AdminRequest_Logs:
		service = v.Logs.GetServiceName()
		if ver := v.Logs.GetVersion(); ver != "" && !ValidVersion(ver) {
			return nil, rejected("version", "logs version %q is not of the form MAJOR.MINOR.PATCH[-prerelease]", ver)
		}
	default:
		return m, nil
	}
	if !ValidServiceName(service) {
		return nil, rejected("service_name", "service_name %q must match [a-z0-9-]{1,64}", service)
	}
	return m, nil
}

// DecodeAdminResponse unmarshals a broker's answer to an admin request and
// checks that it carries a result (status, metrics text, a refusal, the
// result of stop or restart, or a log file).
// Errors are *Violation.
func DecodeAdminResponse(payload []byte) (*pb.AdminResponse, error) {
	m := new(pb.AdminResponse)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, rejected("", "malformed admin response: %v", err)
	}
	if m.GetResult() == nil {
		return nil, rejected("result", "admin response carries none of status, metrics_text, refused, service_action, log_file")
	}
	return m, nil
}

// DecodeHelloReply unmarshals a broker's reply to a Hello and checks that it
// carries Negotiated or Refused. What a client makes of their fields (the
// negotiated protocol, a token that is not 16 bytes: no handoff) is its own
// decision. Errors are *Violation.
func DecodeHelloReply(payload []byte) (*pb.HelloReply, error) {
	m := new(pb.HelloReply)
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, rejected("", "malformed HelloReply: %v", err)
	}
	if m.GetResult() == nil {
		return nil, rejected("result", "HelloReply carries neither Negotiated nor Refused")
	}
	return m, nil
}

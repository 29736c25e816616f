package wire

import pb "github.com/portier/portier/wire/portierv1"

// ErrorCode is the stable code of a refusal (Refused.code in a HelloReply
// or an admin response, RegisterReply.code): the protocol's ErrorCode enum
// as a type of this package, so that SDK users (client.RefusedError,
// backend.RegistrationError) never import the generated messages.
type ErrorCode int32

// The refusal codes. Their values are the enum's on the wire.
const (
	CodeUnspecified        = ErrorCode(pb.ErrorCode_ERROR_CODE_UNSPECIFIED)
	CodeVersionUnsupported = ErrorCode(pb.ErrorCode_ERROR_VERSION_UNSUPPORTED)  // no common protocol or envelope version
	CodeServiceUnknown     = ErrorCode(pb.ErrorCode_ERROR_SERVICE_UNKNOWN)      // no (valid) definition for the service
	CodeBackendSpawnFailed = ErrorCode(pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED) // the backend did not start or register
	CodeRateLimited        = ErrorCode(pb.ErrorCode_ERROR_RATE_LIMITED)         // too many failed starts; retry later
	CodeShuttingDown       = ErrorCode(pb.ErrorCode_ERROR_SHUTTING_DOWN)        // the broker is stopping
	CodePeerRejected       = ErrorCode(pb.ErrorCode_ERROR_PEER_REJECTED)        // the request or the peer broke a rule
	CodeInternal           = ErrorCode(pb.ErrorCode_ERROR_INTERNAL)             // the broker failed
	CodeVersionBlocked     = ErrorCode(pb.ErrorCode_ERROR_VERSION_BLOCKED)      // the definition does not serve that version
	CodeFDPressure         = ErrorCode(pb.ErrorCode_ERROR_FD_PRESSURE)          // the broker is out of descriptors

	// portier extensions, sent only to clients that set CapRefusalCodes.
	CodeDefinitionInvalid = ErrorCode(pb.ErrorCode_ERROR_DEFINITION_INVALID)  // the definition file cannot be used
	CodeServicesDirUnsafe = ErrorCode(pb.ErrorCode_ERROR_SERVICES_DIR_UNSAFE) // the services directory is refused
)

// String returns the code's protocol name, for example
// "ERROR_SERVICE_UNKNOWN"; a value the enum does not know prints as its
// number.
func (c ErrorCode) String() string { return pb.ErrorCode(c).String() }

package wire_test

import (
	"testing"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// TestErrorCodeConstants walks the ErrorCode enum of the generated
// descriptor, so that a code added to the .proto fails here until
// wire.ErrorCode names it (step 2 of "Adding a refusal code" in
// docs/ARCHITECTURE.md).
func TestErrorCodeConstants(t *testing.T) {
	named := map[wire.ErrorCode]string{
		wire.CodeUnspecified:        "ERROR_CODE_UNSPECIFIED",
		wire.CodeVersionUnsupported: "ERROR_VERSION_UNSUPPORTED",
		wire.CodeServiceUnknown:     "ERROR_SERVICE_UNKNOWN",
		wire.CodeBackendSpawnFailed: "ERROR_BACKEND_SPAWN_FAILED",
		wire.CodeRateLimited:        "ERROR_RATE_LIMITED",
		wire.CodeShuttingDown:       "ERROR_SHUTTING_DOWN",
		wire.CodePeerRejected:       "ERROR_PEER_REJECTED",
		wire.CodeInternal:           "ERROR_INTERNAL",
		wire.CodeVersionBlocked:     "ERROR_VERSION_BLOCKED",
		wire.CodeFDPressure:         "ERROR_FD_PRESSURE",
		wire.CodeDefinitionInvalid:  "ERROR_DEFINITION_INVALID",
		wire.CodeServicesDirUnsafe:  "ERROR_SERVICES_DIR_UNSAFE",
	}
	values := pb.ErrorCode(0).Descriptor().Values()
	for i := range values.Len() {
		v := values.Get(i)
		c := wire.ErrorCode(v.Number())
		name, ok := named[c]
		if !ok {
			t.Errorf("enum value %s (%d) has no wire.Code constant", v.Name(), v.Number())
			continue
		}
		if name != string(v.Name()) || c.String() != name {
			t.Errorf("wire constant for %d is %s / %s, enum says %s", v.Number(), name, c, v.Name())
		}
		delete(named, c)
	}
	for c, name := range named {
		t.Errorf("wire constant %s (%d) is not in the enum", name, int32(c))
	}
	if got := wire.ErrorCode(99).String(); got != "99" {
		t.Errorf("unknown code prints %q, want its number", got)
	}
}

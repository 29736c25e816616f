package client

import (
	"errors"
	"testing"

	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// TestEveryRefusalCodeHasASentinel walks every value of the protocol's
// ErrorCode enum, from the generated descriptor so that a code added to the
// .proto is picked up without editing this test, and fails when the client
// has no sentinel for it (or shares one between two codes): the last step
// of "Adding a refusal code" in docs/ARCHITECTURE.md.
func TestEveryRefusalCodeHasASentinel(t *testing.T) {
	values := pb.ErrorCode(0).Descriptor().Values()
	seen := map[error]string{}
	for i := range values.Len() {
		v := values.Get(i)
		code := wire.ErrorCode(v.Number())
		s := codeSentinel(code)
		if code == wire.CodeUnspecified {
			if s != nil {
				t.Errorf("%s has sentinel %v; an unspecified code must match none", v.Name(), s)
			}
			continue
		}
		if s == nil {
			t.Errorf("refusal code %s (%d) has no sentinel: add an Err... variable to client/errors.go and a case to codeSentinel", v.Name(), v.Number())
			continue
		}
		if other, dup := seen[s]; dup {
			t.Errorf("%s and %s share the sentinel %v", other, v.Name(), s)
		}
		seen[s] = string(v.Name())
		if err := error(&RefusedError{Code: code}); !errors.Is(err, s) {
			t.Errorf("a refusal with code %s does not match its sentinel %v", v.Name(), s)
		}
	}
}

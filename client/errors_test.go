package client

import (
	"errors"
	"testing"
	"time"

	"github.com/portier/portier/servicedef"
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

// TestHelloDeadlineLeadsTheClients: the deadline a Hello tells the broker
// comes before the client's own by a tenth of the time left, at most
// maxReplyLead, so the broker's answer at its deadline arrives while the
// client still reads.
func TestHelloDeadlineLeadsTheClients(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct{ left, lead time.Duration }{
		{15 * time.Second, maxReplyLead},
		{time.Second, 100 * time.Millisecond},
		{10 * time.Millisecond, time.Millisecond},
		{0, 0},
		{-time.Second, 0},
	} {
		if got := now.Add(c.left).Sub(helloDeadline(now.Add(c.left), now)); got != c.lead {
			t.Errorf("%s left: the Hello's deadline leads by %s, want %s", c.left, got, c.lead)
		}
	}
	// The defaults agree: a Hello with the default timeout is told a
	// deadline past the default start_timeout, so it waits for a start
	// that takes all of it (and hears the refusal of one that takes more).
	if told := helloDeadline(now.Add(DefaultHandshakeTimeout), now).Sub(now); told <= servicedef.DefaultStartTimeout {
		t.Errorf("a default Hello tells the broker %s, not more than the default start_timeout %s", told, servicedef.DefaultStartTimeout)
	}
}

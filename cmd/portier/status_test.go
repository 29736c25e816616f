package main

import (
	"bytes"
	"strings"
	"testing"

	pb "github.com/portier/portier/wire/portierv1"
)

// TestStatusShowsHandles: the handles a Windows broker left in backends or
// took back are shown when there are any, and only then (a Unix broker
// never has any).
func TestStatusShowsHandles(t *testing.T) {
	for _, tc := range []struct {
		leaked, reclaimed uint64
		want              string
	}{
		{0, 0, ""},
		{2, 0, "handles: 2 left open in backends (leaked), 0 taken back\n"},
		{0, 3, "handles: 0 left open in backends (leaked), 3 taken back\n"},
	} {
		var b bytes.Buffer
		printStatus(&b, &pb.Status{BrokerPid: 7, Socket: "s", Connections: 9, Fallbacks: 5, HandlesLeaked: tc.leaked, HandlesReclaimed: tc.reclaimed})
		got := b.String()
		if tc.want == "" && strings.Contains(got, "handles:") {
			t.Errorf("leaked %d, reclaimed %d: status shows handles:\n%s", tc.leaked, tc.reclaimed, got)
		}
		if tc.want != "" && !strings.Contains(got, "5 handoff fallbacks\n"+tc.want) {
			t.Errorf("leaked %d, reclaimed %d: status lacks %q after the connections:\n%s", tc.leaked, tc.reclaimed, tc.want, got)
		}
	}
}

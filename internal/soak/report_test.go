package soak

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func quiet(nonPidfd, pidfd, listed int) QuietPoint {
	q := QuietPoint{Broker: ProcSample{PID: 1, FDs: nonPidfd + pidfd, FDKinds: map[string]int{"socket": nonPidfd, "pidfd": pidfd}}}
	for range listed {
		q.Listed = append(q.Listed, "echo")
	}
	return q
}

func withDead(q QuietPoint, n int) QuietPoint {
	q.Dead = q.Listed[:n]
	return q
}

// TestFDCheck: the broker's descriptors must come back exactly, per kind,
// to the baseline for the backends it lists.
func TestFDCheck(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after QuietPoint
		want          int64
	}{
		{"same", quiet(14, 2, 2), quiet(14, 2, 2), 0},
		{"re-adopted backends hold no pidfd", quiet(14, 2, 2), quiet(14, 0, 2), 0},
		{"one leaked socket", quiet(14, 2, 2), quiet(15, 2, 2), 1},
		{"an extra backend's control connection", quiet(14, 2, 2), quiet(15, 3, 3), 0},
		{"pidfds beyond the listed backends", quiet(14, 2, 2), quiet(14, 4, 2), 2},
		{"fewer", quiet(14, 2, 2), quiet(12, 1, 2), 0},
		{"a dead listed backend has no control connection", quiet(14, 2, 2), withDead(quiet(15, 2, 3), 1), 1},
		{"not measured", quiet(14, 2, 2), QuietPoint{Err: "no broker"}, 1},
	} {
		rep := Report{Before: tc.before, After: tc.after}
		if got, detail := rep.fdExcess(); got != tc.want {
			t.Errorf("%s: excess %d (%s), want %d", tc.name, got, detail, tc.want)
		}
	}
}

func TestChecksAndTable(t *testing.T) {
	rep := Report{
		Before: quiet(14, 2, 2), After: quiet(14, 2, 2),
		Clients: Counts{Attempted: 10, Correct: 6, Corrupt: 1, Errors: map[string]int64{
			KeyBackendUnavailable: 1, KeyBrokerDown: 1, KeyBrokerListening: 1,
		}},
		LongLived: Counts{Attempted: 2, Correct: 1, Errors: map[string]int64{KeyCutUnexplained: 1, "refused: VERSION_BLOCKED": 2, "refused: SHUTTING_DOWN": 3}},
	}
	var failedNames []string
	for _, c := range rep.Violations() {
		failedNames = append(failedNames, c.Name)
	}
	want := []string{"no corrupt reply", "no ErrBackendUnavailable", "ErrBrokerUnavailable only while no broker listens",
		"long-lived connections survive (idle quiesce)", "no refusal that a valid Hello for a defined service never deserves"}
	if !slices.Equal(failedNames, want) {
		t.Errorf("violations %q, want %q", failedNames, want)
	}
	for _, c := range rep.Violations() {
		if strings.HasPrefix(c.Name, "no refusal") && c.Count != 2 {
			t.Errorf("%s: %d, want 2 (SHUTTING_DOWN can be right)", c.Name, c.Count)
		}
	}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"required results", "FAIL (1)   no corrupt reply", "ok         no hung attempt", KeyBrokerDown, "broker fds"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, b.String())
		}
	}
}

package handoff

import "testing"

func TestReasonAndStageNames(t *testing.T) {
	// These are metric labels: changing one is a breaking change.
	reasons := map[Reason]string{
		ReasonNone:              "none",
		ReasonClientUnsupported: "client_unsupported",
		ReasonPolicyDisabled:    "policy_disabled",
		ReasonBackendNotCapable: "backend_not_capable",
		ReasonFDPressure:        "fd_pressure",
		ReasonRateLimited:       "rate_limited",
		ReasonPermissionDenied:  "permission_denied",
		ReasonIntegrityMismatch: "integrity_mismatch",
		ReasonTransferFailed:    "transfer_failed",
		ReasonBackendRejected:   "backend_rejected",
		ReasonAckTimeout:        "ack_timeout",
		ReasonCanceled:          "canceled",
		ReasonInternal:          "internal_error",
	}
	if len(reasons) != int(numReasons) {
		t.Fatalf("test covers %d reasons, package has %d", len(reasons), numReasons)
	}
	for r, want := range reasons {
		if r.String() != want {
			t.Errorf("Reason %d = %q, want %q", int(r), r.String(), want)
		}
	}
	stages := map[Stage]string{
		StageDecide: "decide", StageTransfer: "transfer", StageDeliver: "deliver",
		StageAwaitAck: "await_ack", StageAcknowledge: "acknowledge",
	}
	if len(stages) != int(numStages) {
		t.Fatalf("test covers %d stages, package has %d", len(stages), numStages)
	}
	for s, want := range stages {
		if s.String() != want {
			t.Errorf("Stage %d = %q, want %q", int(s), s.String(), want)
		}
	}
	if Reason(-1).String() != "reason(-1)" || Reason(99).String() != "reason(99)" ||
		Stage(-1).String() != "stage(-1)" || Stage(7).String() != "stage(7)" {
		t.Error("out-of-range names")
	}
}

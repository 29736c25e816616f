//go:build unix

package broker

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/portier/portier/client"
	"github.com/portier/portier/wire"
	pb "github.com/portier/portier/wire/portierv1"
)

// TestSpawnRefusalNamesLogAndOutput: a backend that prints a lot, ending
// in bytes that are not UTF-8, and exits before registering: the client
// gets the typed refusal (not EOF and a protocol error), whose reason
// names the log file and quotes the last line, with a short valid-UTF-8
// tail of the output in its details.
func TestSpawnRefusalNamesLogAndOutput(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("garbage", "1.0.0", "fail-garbage", "")
	_, err := h.dial("garbage")
	var re *client.RefusedError
	if !errors.As(err, &re) || re.Code != wire.CodeBackendSpawnFailed {
		t.Fatalf("dial = %v (%T), want a BACKEND_SPAWN_FAILED refusal", err, err)
	}
	logPath := re.Details["log"]
	if logPath == "" || !strings.Contains(re.Reason, logPath) {
		t.Errorf("reason %q does not name the log file %q", re.Reason, logPath)
	}
	if _, err := os.Stat(logPath); err != nil {
		t.Errorf("the log file the refusal names: %v", err)
	}
	if !strings.Contains(re.Reason, "fatal: cannot open \uFFFD database") {
		t.Errorf("reason %q does not quote the last line of output", re.Reason)
	}
	tail := re.Details["stderr_tail"]
	if !utf8.ValidString(tail) || !utf8.ValidString(re.Reason) {
		t.Errorf("refusal carries invalid UTF-8: %q / %q", re.Reason, tail)
	}
	if len(tail) > spawnTailBytes || strings.Count(tail, "\n") >= spawnTailLines {
		t.Errorf("stderr_tail is %d bytes, %d lines; want at most %d bytes and %d lines", len(tail), strings.Count(tail, "\n")+1, spawnTailBytes, spawnTailLines)
	}
	if !strings.HasSuffix(tail, "fatal: cannot open \uFFFD database") || !strings.Contains(tail, "noise line 199") {
		t.Errorf("stderr_tail %q is not the end of the output", tail)
	}
	if re.Details["exit_status"] != "exit status 3" {
		t.Errorf("exit_status = %q", re.Details["exit_status"])
	}
}

// TestStatusListsFailingServices: status shows a service whose last start
// failed, with its last error and log, then as rate limited once its
// spawn budget is spent; a successful start of that version clears it,
// and a version no longer defined is forgotten.
func TestStatusListsFailingServices(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.define("flaky", "1.0.0", "fail", "")
	failure := func() *pb.ServiceFailure {
		t.Helper()
		fs := h.b.status().GetFailures()
		if len(fs) != 1 {
			t.Fatalf("status failures = %v, want one", fs)
		}
		return fs[0]
	}
	if _, err := h.dial("flaky"); !errors.Is(err, client.ErrSpawnFailed) {
		t.Fatalf("dial = %v, want ErrSpawnFailed", err)
	}
	f := failure()
	if f.GetServiceName() != "flaky" || f.GetVersion() != "1.0.0" || f.GetState() != "failing" || f.GetFailures() != 1 ||
		f.GetCode() != pb.ErrorCode_ERROR_BACKEND_SPAWN_FAILED || !strings.Contains(f.GetLastError(), "fatal: the database file is locked") ||
		!strings.HasSuffix(f.GetLog(), "flaky-1.0.0.log") {
		t.Errorf("after one failure: %v", f)
	}
	for range 2 {
		_, _ = h.dial("flaky")
	}
	if _, err := h.dial("flaky"); !errors.Is(err, client.ErrRateLimited) {
		t.Fatalf("4th dial = %v, want ErrRateLimited", err)
	}
	f = failure()
	if f.GetState() != "rate_limited" || f.GetFailures() != 3 || f.GetRetryAfterMs() == 0 || f.GetRetryAfterMs() > 30_000 {
		t.Errorf("after three failures: %v, want rate_limited with a retry within the window", f)
	}

	// Another version is defined: the failure of 1.0.0 is forgotten at
	// the janitor's next look.
	h.define("flaky", "1.0.1", "echo", "")
	eventually(t, 10*time.Second, "the failure of a version no longer defined to be forgotten", func() bool {
		return len(h.b.status().GetFailures()) == 0
	})

	// A version that failed and then starts is cleared at once.
	h.define("later", "1.0.0", "fail", "")
	_, _ = h.dial("later")
	if fs := h.b.status().GetFailures(); len(fs) != 1 || fs[0].GetServiceName() != "later" {
		t.Fatalf("failures = %v, want later's", fs)
	}
	h.define("later", "1.0.0", "echo", "")
	c, err := h.dial("later")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, c, "up")
	c.Close()
	if fs := h.b.status().GetFailures(); len(fs) != 0 {
		t.Fatalf("failures after a successful start = %v, want none", fs)
	}
}

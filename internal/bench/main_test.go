package bench

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv selects a helper role when the test binary re-executes itself
// as a child process (see helperMain).
const helperEnv = "BENCH_TEST_HELPER" // not PORTIER_: childEnv drops those

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(helperMain(role))
	}
	goleak.VerifyTestMain(m)
}

package backend

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv makes the re-executed test binary act as a helper process (for
// example a client of another uid) instead of running tests. The name avoids
// the PORTIER_ prefix so that it never looks like broker environment.
const helperEnv = "BACKEND_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m, leakOptions...)
}

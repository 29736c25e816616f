package ipc

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv selects a helper role when the test binary re-executes itself
// as a child process.
const helperEnv = "PORTIER_IPC_TEST_HELPER"

func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	goleak.VerifyTestMain(m, leakOptions...)
}

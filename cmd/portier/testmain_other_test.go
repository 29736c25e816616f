//go:build !linux

package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as the portier command, so that the
// demo and test brokers can start the echo backend from os.Executable()
// (`<test binary> __echo-backend`). On Linux bench_test.go defines the same
// TestMain; this one covers the other platforms.
const helperEnv = "CMD_PORTIER_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Setenv(helperEnv, "1")
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	goleak.VerifyTestMain(m)
}

package fdpass

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// helperEnv selects a helper mode when the test binary re-executes itself as
// the "other process" of a cross-process test.
const helperEnv = "PORTIER_FDPASS_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode); err != nil {
			fmt.Fprintf(os.Stderr, "fdpass helper %q: %v\n", mode, err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	// go-winio (the Windows tests' pipe client) keeps one completion-port
	// goroutine for the life of the process by design.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/Microsoft/go-winio.ioCompletionProcessor"))
}

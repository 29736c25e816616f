package main

import (
	"testing"

	"github.com/portier/portier/internal/fdcount"
	"go.uber.org/goleak"
)

// checkCLILeaks fails the test if, once it and all its cleanups are done
// (call it first so its cleanup runs last), descriptors, goroutines or child
// processes are left over.
func checkCLILeaks(t *testing.T) {
	t.Helper()
	fdcount.Check(t)
	t.Cleanup(func() {
		if kids := cliChildren(t); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		goleak.VerifyNone(t, leakOptions...)
	})
}

package main

import (
	"testing"

	"go.uber.org/goleak"
)

// checkCLILeaks fails the test if, once it and all its cleanups are done
// (call it first so its cleanup runs last), descriptors, goroutines or child
// processes are left over.
func checkCLILeaks(t *testing.T) {
	t.Helper()
	before := cliFDs(t)
	t.Cleanup(func() {
		if before >= 0 {
			if after := cliFDs(t); after != before {
				t.Errorf("descriptor leak: %d open before the test, %d after", before, after)
			}
		}
		if kids := cliChildren(t); len(kids) > 0 {
			t.Errorf("child processes left behind: %v", kids)
		}
		goleak.VerifyNone(t)
	})
}

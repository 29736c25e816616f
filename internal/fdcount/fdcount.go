// Package fdcount counts the open descriptors of the running process, for
// tests that must show a code path leaves none behind: every test that
// passes descriptors compares the count before and after. On Windows it
// counts the process's handles to file objects (files, pipes, sockets),
// the handles a leaked connection leaves behind; CheckHandles is the
// stricter check, of handles of every kind, for the packages that own
// handles themselves. Only tests import it.
package fdcount

import (
	"errors"
	"testing"
)

// ErrUnsupported reports a platform without a listing of the process's
// descriptors.
var ErrUnsupported = errors.New("fdcount: no descriptor listing on this platform")

// Open returns the number of descriptors this process has open (on
// Windows, of handles to file objects; see count_windows.go).
func Open() (int, error) { return count() }

// Count returns the number of open descriptors, failing t when they cannot
// be listed and skipping it on a platform without a listing.
func Count(t testing.TB) int {
	t.Helper()
	n, err := Open()
	switch {
	case errors.Is(err, ErrUnsupported):
		t.Skip(err)
	case err != nil:
		t.Fatal(err)
	}
	return n
}

// Check records the count now and fails t if it differs once the test and
// all its other cleanups are done. Call it first in a test, so that its
// cleanup runs last. On a platform without a listing it checks nothing.
func Check(t testing.TB) {
	t.Helper()
	before, err := Open()
	if errors.Is(err, ErrUnsupported) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		after, err := Open()
		if err != nil {
			t.Errorf("count descriptors after the test: %v", err)
			return
		}
		if after != before {
			t.Errorf("descriptor leak: %d open before the test, %d after", before, after)
		}
	})
}

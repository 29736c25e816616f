// Package fdcount counts the open descriptors of the running process, for
// tests that must show a code path leaves none behind: every test that
// passes descriptors compares the count before and after. Only tests import
// it.
package fdcount

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// ErrUnsupported reports a platform without a listing of the process's
// descriptors.
var ErrUnsupported = errors.New("fdcount: no descriptor listing on this platform")

var warmOnce sync.Once

// warm makes the runtime open the descriptors it keeps for the life of the
// process (the network poller's epoll or kqueue and its wakeup descriptor),
// so that the first count already includes them and later counts compare
// like with like. A pipe with a deadline is registered with the poller.
func warm() {
	r, w, err := os.Pipe()
	if err != nil {
		return
	}
	_ = r.SetReadDeadline(time.Now())
	_ = r.Close()
	_ = w.Close()
}

// Open returns the number of descriptors this process has open.
func Open() (int, error) {
	if dir == "" {
		return 0, ErrUnsupported
	}
	warmOnce.Do(warm)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("fdcount: %w", err)
	}
	return len(ents), nil
}

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

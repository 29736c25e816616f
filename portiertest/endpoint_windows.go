package portiertest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/windows"
)

// endpoint is a named pipe of the broker's own: a pipe has no directory,
// so its name carries a random part instead.
func endpoint(string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return `\\.\pipe\portiertest-` + hex.EncodeToString(b[:])
}

// stateDir keeps the broker's state and its backends' logs in dir, which
// Close removes, rather than under %LocalAppData%.
func stateDir(dir string) string { return filepath.Join(dir, "state") }

// removeWait bounds how long removeAll retries.
const removeWait = 5 * time.Second

// removeAll is os.RemoveAll, retried while Windows refuses with a sharing
// violation or access denied: a backend that has just exited can still
// hold its log file open for a moment (as testing's TempDir cleanup
// retries too).
func removeAll(dir string) error {
	deadline := time.Now().Add(removeWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err := os.RemoveAll(dir)
		if err == nil || !(errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED)) ||
			time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
	}
}

package portiertest

import (
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
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

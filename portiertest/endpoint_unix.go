//go:build unix

package portiertest

import (
	"os"
	"path/filepath"
)

// endpoint is the broker's socket, in its directory.
func endpoint(dir string) string { return filepath.Join(dir, "run", "broker.sock") }

// stateDir: the broker's default, its socket's directory, is dir's already.
func stateDir(string) string { return "" }

// removeAll is os.RemoveAll.
func removeAll(dir string) error { return os.RemoveAll(dir) }

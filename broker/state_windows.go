//go:build windows

package broker

import (
	"os"
	"path/filepath"
)

// defaultStateDir is %LocalAppData%\portier: a pipe name has no directory.
func defaultStateDir(string) string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "portier")
}

// ensureStateDir creates the state directory.
func ensureStateDir(dir string) error { return os.MkdirAll(dir, 0o700) }

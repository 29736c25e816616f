//go:build windows

package main

import (
	"strings"
	"testing"
)

// TestInstallWindows: install says plainly that Windows is not supported
// yet, and fails, rather than writing anything.
func TestInstallWindows(t *testing.T) {
	for _, args := range [][]string{{"install"}, {"install", "--dry-run"}, {"install", "--uninstall"}} {
		code, out, errOut := runCmd(args...)
		if code != exitFailure || out != "" || !strings.Contains(errOut, "not supported on Windows yet") {
			t.Errorf("%q = %d, stdout %q, stderr %q; want exit 1 saying Windows is not supported yet", args, code, out, errOut)
		}
	}
}

//go:build windows

package main

import (
	"io/fs"
	"os"
)

// checkEndpoint says which pipe doctor looks at and where its name came
// from. A named pipe has no directory to check: each instance carries a
// DACL that admits only its creator's user, and clients and the broker
// check each other's user SID.
func checkEndpoint(r *doctorReport, fromFlag bool) {
	switch {
	case fromFlag:
		r.add("socket_path", checkOK, "", "pipe %s (from --socket)", r.Socket)
	case os.Getenv("PORTIER_SOCKET") != "":
		r.add("socket_path", checkOK, "", "pipe %s (from $PORTIER_SOCKET)", r.Socket)
	default:
		r.add("socket_path", checkOK, "", "pipe %s (this user's default, named after the hash of your SID)", r.Socket)
	}
}

// checkLimits: Windows has no per-process descriptor limit a broker runs
// into.
func checkLimits(*doctorReport) {}

// runnable reports whether fi is a file the broker can start. Windows
// decides by the file itself (CreateProcess), not by mode bits, which Go
// does not report there.
func runnable(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }

// fileOwner: file ownership is an ACL matter on Windows, which servicedef
// does not check; never reached there.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }

//go:build unix

package ipc

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path bind(2)/connect(2) accept: sun_path
// minus its terminating NUL (107 bytes on Linux, 103 on the BSDs and darwin).
var maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// DefaultSocketPath returns the broker's endpoint for the current user:
// $XDG_RUNTIME_DIR/portier/broker.sock when XDG_RUNTIME_DIR is set to an
// absolute path, else /tmp/portier-$UID/broker.sock. /tmp is used rather
// than $TMPDIR so that every process of the user agrees on the path whatever
// its environment. It fails only when the path would not fit in a socket
// address.
func DefaultSocketPath() (string, error) {
	var dir string
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && filepath.IsAbs(d) {
		// The XDG spec says relative values must be ignored.
		dir = filepath.Join(d, "portier")
	} else {
		dir = filepath.Join("/tmp", fmt.Sprintf("portier-%d", os.Geteuid()))
	}
	p := filepath.Join(dir, "broker.sock")
	if err := checkSocketPathLen(p); err != nil {
		return "", err
	}
	return p, nil
}

// checkSocketPathLen turns the kernel's bare EINVAL for an over-long socket
// path into an error that says what is wrong.
func checkSocketPathLen(path string) error {
	if len(path) > maxSocketPath {
		return fmt.Errorf("ipc: socket path %q is %d bytes, longer than the %d this OS allows; use a shorter directory (XDG_RUNTIME_DIR)", path, len(path), maxSocketPath)
	}
	return nil
}

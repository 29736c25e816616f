//go:build unix

package broker

import (
	"path/filepath"

	"github.com/portier/portier/internal/ipc"
)

// defaultStateDir is the socket's directory, which the singleton bind
// already keeps private.
func defaultStateDir(socket string) string { return filepath.Dir(socket) }

// ensureStateDir creates the state directory or checks an existing one:
// 0700, owned by the user, not a symbolic link.
func ensureStateDir(dir string) error { return ipc.EnsurePrivateDir(dir) }

//go:build windows

package broker

import (
	"errors"
	"os"

	"github.com/portier/portier/internal/ipc"
)

// defaultStateDir is ipc.PipeStateDir: %LocalAppData%\portier\<pipe>.
func defaultStateDir(socket string) string {
	d, _ := ipc.PipeStateDir(socket) // "" is reported by ensureStateDir
	return d
}

// ensureStateDir creates the state directory. Under the user's profile it
// inherits the profile's ACL, which admits the user, SYSTEM and
// administrators; there are no mode bits to check.
func ensureStateDir(dir string) error {
	if dir == "" {
		return errors.New("no state directory: %LocalAppData% is not set; set Config.StateDir")
	}
	return os.MkdirAll(dir, 0o700)
}

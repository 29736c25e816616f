//go:build windows

package broker

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// pipePrefix starts every local named pipe's name.
const pipePrefix = `\\.\pipe\`

// defaultStateDir is %LocalAppData%\portier\<pipe>: a pipe name has no
// directory to share, and brokers on different pipes (tests, the demo)
// must not share a state file. The user's profile keeps it private.
func defaultStateDir(socket string) string {
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	name := socket
	if len(name) >= len(pipePrefix) && strings.EqualFold(name[:len(pipePrefix)], pipePrefix) {
		name = name[len(pipePrefix):]
	}
	name = strings.NewReplacer(`\`, "_", "/", "_", ":", "_").Replace(name)
	return filepath.Join(d, "portier", name)
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

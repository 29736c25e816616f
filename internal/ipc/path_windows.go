package ipc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSocketPath returns the broker's endpoint for the current user on
// Windows: the named pipe \\.\pipe\portier-<hash>, where hash is the first 16
// hex digits of SHA-256 of the user's SID string. Hashing keeps the name
// short and free of characters a pipe name should not carry while still
// being distinct per user.
func DefaultSocketPath() (string, error) {
	sid, err := currentUserSID()
	if err != nil {
		return "", err
	}
	return pipeNameForSID(sid.String()), nil
}

func pipeNameForSID(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return `\\.\pipe\portier-` + hex.EncodeToString(sum[:8])
}

// pipePrefix starts every local named pipe's name.
const pipePrefix = `\\.\pipe\`

// PipeStateDir is where the files of the broker serving pipe live on
// Windows: %LocalAppData%\portier\<pipe name>. A pipe has no directory
// beside it, as a Unix socket has; naming the directory after the pipe
// keeps brokers on different pipes (tests, the demo) apart, and the
// user's profile keeps it private. The broker keeps its state file and
// its backends' logs there, and a client that auto-starts the broker its
// log.
func PipeStateDir(pipe string) (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("ipc: no directory for the broker's files: %w", err)
	}
	name := pipe
	if len(name) >= len(pipePrefix) && strings.EqualFold(name[:len(pipePrefix)], pipePrefix) {
		name = name[len(pipePrefix):]
	}
	name = strings.NewReplacer(`\`, "_", "/", "_", ":", "_").Replace(name)
	return filepath.Join(d, "portier", name), nil
}

package ipc

import (
	"crypto/sha256"
	"encoding/hex"
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

//go:build windows

package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
)

// makePrivateDir creates dir; under the user's temporary directory it
// inherits the profile's ACL.
func makePrivateDir(dir string) error { return os.MkdirAll(dir, 0o700) }

// demoEndpoint is a named pipe of the demo's own (not the user's broker's:
// the demo runs beside a broker that may be serving) and a state directory
// under dir.
func demoEndpoint(dir string) (socket, stateDir string, err error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return "", "", err
	}
	stateDir = filepath.Join(dir, "state")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return "", "", err
	}
	return `\\.\pipe\portier-demo-` + hex.EncodeToString(rnd[:]), stateDir, nil
}

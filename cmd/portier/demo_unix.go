//go:build unix

package main

import (
	"path/filepath"

	"github.com/portier/portier/internal/ipc"
)

// makePrivateDir creates dir 0700 (or checks it is private).
func makePrivateDir(dir string) error { return ipc.EnsurePrivateDir(dir) }

// demoEndpoint is the demo broker's socket, in a private directory under
// dir, which also holds its state.
func demoEndpoint(dir string) (socket, stateDir string, err error) {
	run := filepath.Join(dir, "run")
	if err := ipc.EnsurePrivateDir(run); err != nil {
		return "", "", err
	}
	return filepath.Join(run, "broker.sock"), run, nil
}

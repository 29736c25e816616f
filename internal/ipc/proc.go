//go:build linux || darwin || windows

package ipc

import "fmt"

// noProcess wraps both ErrNoProcess and the underlying cause.
func noProcess(pid int, cause error) error {
	return fmt.Errorf("%w: pid %d (%w)", ErrNoProcess, pid, cause)
}

func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("ipc: invalid pid %d", pid)
	}
	return nil
}

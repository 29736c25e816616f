//go:build !linux && !darwin && !windows

package ipc

// ProcessStartTime is not implemented on this platform; it returns
// ErrUnsupported.
func ProcessStartTime(pid int) (uint64, error) {
	return 0, ErrUnsupported
}

// ExecutablePath is not implemented on this platform; it returns
// ErrUnsupported.
func ExecutablePath(pid int) (string, error) {
	return "", ErrUnsupported
}

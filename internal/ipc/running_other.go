//go:build !linux && !darwin

package ipc

// ProcessRunning reports whether pid names the process that started at
// startTime (as ProcessStartTime reports it). Here it compares start times
// only; where ProcessStartTime is unsupported, no process is running as far
// as the caller can tell.
func ProcessRunning(pid int, startTime uint64) bool {
	st, err := ProcessStartTime(pid)
	return err == nil && st == startTime
}

package ipc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
)

// openProcess opens process pid with rights; a pid that names no process
// yields an error matching ErrNoProcess.
func openProcess(pid int, rights uint32) (windows.Handle, error) {
	if err := checkPID(pid); err != nil {
		return 0, err
	}
	h, err := windows.OpenProcess(rights, false, uint32(pid))
	if err != nil {
		if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
			// OpenProcess's answer for a pid that names no process.
			return 0, noProcess(pid, err)
		}
		return 0, fmt.Errorf("ipc: OpenProcess %d: %w", pid, err)
	}
	return h, nil
}

// ProcessStartTime returns an opaque value identifying when process pid
// started: here its creation time from GetProcessTimes, in 100 ns units
// since 1601. Compare values for equality only. A missing process yields an
// error matching ErrNoProcess.
func ProcessStartTime(pid int) (uint64, error) {
	h, err := openProcess(pid, windows.PROCESS_QUERY_LIMITED_INFORMATION)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(h) //nolint:errcheck // nothing to do about it
	return processStartTime(h, pid)
}

// processStartTime is ProcessStartTime for an open process handle.
func processStartTime(h windows.Handle, pid int) (uint64, error) {
	var creation, exit, kernel, user windows.Filetime
	if err := windows.GetProcessTimes(h, &creation, &exit, &kernel, &user); err != nil {
		return 0, fmt.Errorf("ipc: GetProcessTimes %d: %w", pid, err)
	}
	return uint64(creation.HighDateTime)<<32 | uint64(creation.LowDateTime), nil
}

// ExecutablePath returns the full path of the executable process pid runs
// (QueryFullProcessImageName, Win32 path format).
func ExecutablePath(pid int) (string, error) {
	h, err := openProcess(pid, windows.PROCESS_QUERY_LIMITED_INFORMATION)
	if err != nil {
		return "", err
	}
	defer windows.CloseHandle(h) //nolint:errcheck // nothing to do about it
	return executablePath(h, pid)
}

// executablePath is ExecutablePath for an open process handle.
func executablePath(h windows.Handle, pid int) (string, error) {
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return "", fmt.Errorf("ipc: QueryFullProcessImageName %d: %w", pid, err)
	}
	return windows.UTF16ToString(buf[:n]), nil
}

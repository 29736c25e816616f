package ipc

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// ProcessStartTime returns an opaque value identifying when process pid
// started. Together with the pid it identifies a process across pid reuse:
// a new process that gets the same pid has a different start time. Compare
// values for equality only; the unit differs per platform (Linux: clock
// ticks since boot, field 22 of /proc/<pid>/stat; darwin: microseconds since
// the epoch; Windows: FILETIME of creation). A missing process yields an
// error matching ErrNoProcess.
func ProcessStartTime(pid int) (uint64, error) {
	if err := checkPID(pid); err != nil {
		return 0, err
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, noProcess(pid, err)
		}
		return 0, fmt.Errorf("ipc: process start time: %w", err)
	}
	v, err := parseStatStartTime(data)
	if err != nil {
		return 0, fmt.Errorf("ipc: /proc/%d/stat: %w", pid, err)
	}
	return v, nil
}

// parseStatStartTime extracts starttime from the contents of /proc/<pid>/stat:
// "pid (comm) state ppid ... starttime ...". comm is chosen by the process and
// may contain spaces, parentheses and even newlines, so fields are counted
// from the last ')', after which field 3 (state) begins.
func parseStatStartTime(data []byte) (uint64, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("malformed: no ')' after comm")
	}
	fields := bytes.Fields(data[i+1:])
	const idx = 22 - 3 // starttime is field 22; fields[0] is field 3
	if len(fields) <= idx {
		return 0, fmt.Errorf("malformed: %d fields after comm, want more than %d", len(fields), idx)
	}
	v, err := strconv.ParseUint(string(fields[idx]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("malformed starttime: %w", err)
	}
	return v, nil
}

// ExecutablePath returns the path of the executable process pid runs, as the
// kernel reports it (/proc/<pid>/exe). If the file was replaced or removed
// since the process started, Linux appends " (deleted)"; this is returned
// as is so that a caller comparing paths sees the mismatch.
func ExecutablePath(pid int) (string, error) {
	if err := checkPID(pid); err != nil {
		return "", err
	}
	p, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", noProcess(pid, err)
		}
		return "", fmt.Errorf("ipc: executable path: %w", err)
	}
	return p, nil
}

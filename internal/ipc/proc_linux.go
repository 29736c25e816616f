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

// ProcessRunning reports whether pid names the process that started at
// startTime (as ProcessStartTime reports it) and that process has not
// exited. A zombie has exited: it is only waiting for its parent (or, for a
// backend a previous broker started, init or a subreaper) to collect its
// status, and it serves nobody, though its /proc entry and start time are
// still there.
func ProcessRunning(pid int, startTime uint64) bool {
	if checkPID(pid) != nil {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	state, st, err := parseStat(data)
	return err == nil && st == startTime && !exitedState(state)
}

// exitedState reports whether a /proc/<pid>/stat state letter is that of a
// process that has exited: Z (zombie) or X (dead; x before Linux 3.13).
func exitedState(state byte) bool { return state == 'Z' || state == 'X' || state == 'x' }

// parseStatStartTime extracts starttime from the contents of /proc/<pid>/stat.
func parseStatStartTime(data []byte) (uint64, error) {
	_, v, err := parseStat(data)
	return v, err
}

// parseStat extracts the state letter (field 3) and starttime (field 22)
// from the contents of /proc/<pid>/stat: "pid (comm) state ppid ...
// starttime ...". comm is chosen by the process and may contain spaces,
// parentheses and even newlines, so fields are counted from the last ')',
// after which field 3 (state) begins.
func parseStat(data []byte) (state byte, starttime uint64, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed: no ')' after comm")
	}
	fields := bytes.Fields(data[i+1:])
	const idx = 22 - 3 // starttime is field 22; fields[0] is field 3
	if len(fields) <= idx {
		return 0, 0, fmt.Errorf("malformed: %d fields after comm, want more than %d", len(fields), idx)
	}
	if len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("malformed state %q", fields[0])
	}
	v, err := strconv.ParseUint(string(fields[idx]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed starttime: %w", err)
	}
	return fields[0][0], v, nil
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

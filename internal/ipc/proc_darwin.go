package ipc

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ProcessStartTime returns an opaque value identifying when process pid
// started: here p_starttime from sysctl kern.proc.pid, in microseconds since
// the epoch. Compare values for equality only. A missing process yields an
// error matching ErrNoProcess.
func ProcessStartTime(pid int) (uint64, error) {
	if err := checkPID(pid); err != nil {
		return 0, err
	}
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err == nil && int(kp.Proc.P_pid) != pid {
		// sysctl answers a missing pid with an empty record.
		err = unix.ESRCH
	}
	if err != nil {
		if kerr := unix.Kill(pid, 0); errors.Is(kerr, unix.ESRCH) || errors.Is(err, unix.ESRCH) {
			return 0, noProcess(pid, unix.ESRCH)
		}
		return 0, fmt.Errorf("ipc: process start time: %w", err)
	}
	tv := kp.Proc.P_starttime
	return uint64(tv.Sec)*1_000_000 + uint64(tv.Usec), nil
}

// szomb is p_stat of a zombie (SZOMB in <sys/proc.h>).
const szomb = 5

// ProcessRunning reports whether pid names the process that started at
// startTime (as ProcessStartTime reports it) and that process has not
// exited: a zombie, waiting for its parent to collect its status, has.
func ProcessRunning(pid int, startTime uint64) bool {
	if checkPID(pid) != nil {
		return false
	}
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil || int(kp.Proc.P_pid) != pid || kp.Proc.P_stat == szomb {
		return false
	}
	tv := kp.Proc.P_starttime
	return uint64(tv.Sec)*1_000_000+uint64(tv.Usec) == startTime
}

// ExecutablePath is unsupported on darwin: proc_pidpath needs cgo. It
// returns ErrUnsupported; callers rely on pid, start time and the spawn
// secret instead.
func ExecutablePath(pid int) (string, error) {
	return "", ErrUnsupported
}

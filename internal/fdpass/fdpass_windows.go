package fdpass

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
)

// Error is the error the duplication functions return. It matches
// (errors.Is) every class it belongs to — ErrOpenProcess, ErrAccessDenied,
// ErrDuplicateFailed, ErrInvalidHandle, ErrTargetExited — and the underlying
// windows.Errno.
type Error struct {
	Op      string // "OpenProcess" or "DuplicateHandle"
	PID     uint32 // the target process (0 if unknown)
	Err     error  // the Windows error
	classes []error
}

func (e *Error) Error() string {
	return fmt.Sprintf("fdpass: %s (target pid %d): %v", e.Op, e.PID, e.Err)
}

// Unwrap exposes the classes and the Windows error to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	return append(append([]error(nil), e.classes...), e.Err)
}

// newError classifies err. exited says whether the target is known to have
// exited; Windows reports duplication into a dead process as access denied,
// which is not a permission problem.
func newError(op string, pid uint32, err error, class error, exited bool) *Error {
	classes := []error{class}
	switch {
	case exited:
		classes = append(classes, ErrTargetExited)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		classes = append(classes, ErrAccessDenied)
	}
	if errors.Is(err, windows.ERROR_INVALID_HANDLE) {
		classes = append(classes, ErrInvalidHandle)
	}
	return &Error{Op: op, PID: pid, Err: err, classes: classes}
}

// targetExited reports whether process handle p names a process that has
// exited. A handle that cannot be waited on (no SYNCHRONIZE right, or not
// a process) counts as not exited: the original error stands.
func targetExited(p windows.Handle) bool {
	r, err := windows.WaitForSingleObject(p, 0)
	return err == nil && r == windows.WAIT_OBJECT_0
}

// targetPID returns the pid of process handle p, or 0.
func targetPID(p windows.Handle) uint32 {
	pid, _ := windows.GetProcessId(p)
	return pid
}

// openTarget opens the target process with only the rights the pid
// variants need on it.
func openTarget(pid uint32) (windows.Handle, error) {
	p, err := windows.OpenProcess(windows.PROCESS_DUP_HANDLE|windows.SYNCHRONIZE, false, pid)
	if err != nil {
		return 0, newError("OpenProcess", pid, err, ErrOpenProcess, false)
	}
	return p, nil
}

// DuplicateIntoProcess duplicates h (a handle in this process) into the
// process target (a process handle with PROCESS_DUP_HANDLE; SYNCHRONIZE too
// lets a failure say whether the target had exited) with the same access
// rights, and returns the handle's value in the target's handle table: the
// number to put in HandoffOffer.handle_value. h stays open here; the caller
// closes its own copy when the handoff settles.
//
// Use the handle of the process whose identity was checked (the one the
// broker started, or a re-adopted backend opened after its identity check),
// never one opened later by pid, which might by then name another process.
//
// The new handle exists in the target whether or not the target ever learns
// its value. If the target does not acknowledge the offer, the handle can only
// be reclaimed with CloseInProcess, and only when the target provably did not
// adopt it.
func DuplicateIntoProcess(target, h windows.Handle) (uint64, error) {
	var out windows.Handle
	if err := windows.DuplicateHandle(windows.CurrentProcess(), h, target, &out, 0, false, windows.DUPLICATE_SAME_ACCESS); err != nil {
		return 0, newError("DuplicateHandle", targetPID(target), err, ErrDuplicateFailed, targetExited(target))
	}
	return uint64(out), nil
}

// DuplicateInto is DuplicateIntoProcess for a target named by pid: it opens
// the process, duplicates, and closes it again. Only for a pid that cannot
// have been reused (tests, or a process this one holds a handle to
// anyway); a broker keeps the backend's process handle and uses
// DuplicateIntoProcess.
func DuplicateInto(targetPID uint32, h windows.Handle) (uint64, error) {
	p, err := openTarget(targetPID)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(p)
	return DuplicateIntoProcess(p, h)
}

// CloseInProcess closes the handle value inside process target
// (DuplicateHandle with DUPLICATE_CLOSE_SOURCE). Use it only to reclaim a
// handle DuplicateIntoProcess created that the target provably did not adopt
// (for example the target rejected the offer before touching the handle, or
// the offer never reached it): if the target did adopt it, or has since
// reused the value for something else, this closes that instead.
func CloseInProcess(target windows.Handle, value uint64) error {
	// The usual idiom passes no target process at all; Wine rejects that
	// (ERROR_INVALID_HANDLE), so take the handle over into this process
	// instead and close it here. DUPLICATE_CLOSE_SOURCE closes the target's
	// handle even when the duplication itself fails.
	var local windows.Handle
	if err := windows.DuplicateHandle(target, windows.Handle(value), windows.CurrentProcess(), &local, 0, false,
		windows.DUPLICATE_CLOSE_SOURCE|windows.DUPLICATE_SAME_ACCESS); err != nil {
		return newError("DuplicateHandle", targetPID(target), err, ErrDuplicateFailed, targetExited(target))
	}
	return windows.CloseHandle(local)
}

// CloseInTarget is CloseInProcess for a target named by pid, with the same
// caveat as DuplicateInto.
func CloseInTarget(targetPID uint32, value uint64) error {
	p, err := openTarget(targetPID)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(p)
	return CloseInProcess(p, value)
}

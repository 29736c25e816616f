package fdpass

import (
	"errors"
	"fmt"

	"golang.org/x/sys/windows"
)

// Error is the error DuplicateInto and CloseInTarget return. It matches
// (errors.Is) every class it belongs to — ErrOpenProcess, ErrAccessDenied,
// ErrDuplicateFailed — and the underlying windows.Errno.
type Error struct {
	Op      string // "OpenProcess" or "DuplicateHandle"
	PID     uint32 // the target process
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

func newError(op string, pid uint32, err error, class error) *Error {
	classes := []error{class}
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		classes = append(classes, ErrAccessDenied)
	}
	return &Error{Op: op, PID: pid, Err: err, classes: classes}
}

// openTarget opens the target process with only the right DuplicateHandle
// needs on it.
func openTarget(pid uint32) (windows.Handle, error) {
	p, err := windows.OpenProcess(windows.PROCESS_DUP_HANDLE, false, pid)
	if err != nil {
		return 0, newError("OpenProcess", pid, err, ErrOpenProcess)
	}
	return p, nil
}

// DuplicateInto duplicates h (a handle in this process) into the process
// targetPID with the same access rights, and returns the handle's value in
// the target's handle table: the number to put in HandoffOffer.handle_value.
// h stays open here; the caller closes its own copy when the handoff settles.
//
// The new handle exists in the target whether or not the target ever learns
// its value. If the target does not acknowledge the offer, the handle can only
// be reclaimed with CloseInTarget, and only when the target provably did not
// adopt it.
func DuplicateInto(targetPID uint32, h windows.Handle) (uint64, error) {
	p, err := openTarget(targetPID)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(p)
	var out windows.Handle
	if err := windows.DuplicateHandle(windows.CurrentProcess(), h, p, &out, 0, false, windows.DUPLICATE_SAME_ACCESS); err != nil {
		return 0, newError("DuplicateHandle", targetPID, err, ErrDuplicateFailed)
	}
	return uint64(out), nil
}

// CloseInTarget closes the handle value inside process targetPID
// (DuplicateHandle with DUPLICATE_CLOSE_SOURCE). Use it only to
// reclaim a handle DuplicateInto created that the target provably did not
// adopt (for example the target rejected the offer before touching the
// handle, or it exited and was replaced): if the target did adopt it, or has
// since reused the value for something else, this closes that instead.
func CloseInTarget(targetPID uint32, value uint64) error {
	p, err := openTarget(targetPID)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(p)
	// The usual idiom passes no target process at all; Wine rejects that
	// (ERROR_INVALID_HANDLE), so take the handle over into this process
	// instead and close it here. DUPLICATE_CLOSE_SOURCE closes the target's
	// handle even when the duplication itself fails.
	var local windows.Handle
	if err := windows.DuplicateHandle(p, windows.Handle(value), windows.CurrentProcess(), &local, 0, false,
		windows.DUPLICATE_CLOSE_SOURCE|windows.DUPLICATE_SAME_ACCESS); err != nil {
		return newError("DuplicateHandle", targetPID, err, ErrDuplicateFailed)
	}
	return windows.CloseHandle(local)
}

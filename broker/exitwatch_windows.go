package broker

import (
	"errors"
	"sync"

	"github.com/portier/portier/internal/ipc"
	"golang.org/x/sys/windows"
)

// handleWatch watches a process through a handle to it, which becomes
// signaled when the process exits, whoever started it. A waiting watch
// holds an OS thread (WaitForMultipleObjects), one per re-adopted backend.
type handleWatch struct {
	proc, cancel windows.Handle

	mu      sync.Mutex
	waiting bool // wait is in WaitForMultipleObjects: the handles must stay
	closed  bool
}

// newExitWatch watches the process pid that started at startTime. It
// returns errProcessGone when that process has already exited (or the pid
// names another process now), errNoExitWatch when it cannot be opened.
func newExitWatch(pid int, startTime uint64) (exitWatch, error) {
	h, err := windows.OpenProcess(windows.SYNCHRONIZE, false, uint32(pid))
	if errors.Is(err, windows.ERROR_INVALID_PARAMETER) {
		return nil, errProcessGone // no process has that pid
	}
	if err != nil {
		return nil, errNoExitWatch
	}
	// The handle names whatever process has the pid now, and keeps that pid
	// from being reused: it is the backend only if that process started at
	// startTime, checked after opening.
	if !ipc.ProcessRunning(pid, startTime) {
		_ = windows.CloseHandle(h)
		return nil, errProcessGone
	}
	cancel, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		_ = windows.CloseHandle(h)
		return nil, errNoExitWatch
	}
	return &handleWatch{proc: h, cancel: cancel}, nil
}

func (w *handleWatch) wait() bool {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return false
	}
	w.waiting = true
	w.mu.Unlock()
	r, err := windows.WaitForMultipleObjects([]windows.Handle{w.proc, w.cancel}, false, windows.INFINITE)
	w.mu.Lock()
	w.waiting = false
	if w.closed {
		w.free()
	}
	w.mu.Unlock()
	return err == nil && r == windows.WAIT_OBJECT_0
}

// close ends the watch; the handles are closed here, or by a wait in
// progress once it returns.
func (w *handleWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.waiting {
		_ = windows.SetEvent(w.cancel)
		return
	}
	w.free()
}

func (w *handleWatch) free() {
	_ = windows.CloseHandle(w.proc)
	_ = windows.CloseHandle(w.cancel)
}

package ipc

import (
	"fmt"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/windows"
)

// processHandleRights are the rights a ProcessHandle holds: duplicating
// handles into the process, reading its start time and executable, and
// waiting for its exit.
const processHandleRights = windows.PROCESS_DUP_HANDLE | windows.PROCESS_QUERY_LIMITED_INFORMATION | windows.SYNCHRONIZE

// ProcessHandle is an open handle to a process whose identity is settled:
// one this process started (HoldProcess), or one found again by pid whose
// start time matched a record (OpenProcessHandle). Handles are duplicated
// into this handle, never into a pid looked up later: while the handle is
// open the process object, and so its pid, cannot be reused, even after the
// process exits.
type ProcessHandle struct {
	mu     sync.RWMutex // guards h against Close
	h      windows.Handle
	closed bool
	pid    int
	start  uint64
}

// HoldProcess returns a handle to p, a process this process started and has
// not waited for yet. It duplicates the handle os/exec got from
// CreateProcess, so no pid is looked up: the result refers to the process
// that was started even if it has exited since. Call it right after Start;
// after p.Wait or p.Release it fails.
func HoldProcess(p *os.Process) (*ProcessHandle, error) {
	var h windows.Handle
	var derr error
	err := p.WithHandle(func(ph uintptr) {
		self := windows.CurrentProcess()
		derr = windows.DuplicateHandle(self, windows.Handle(ph), self, &h, processHandleRights, false, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("ipc: handle of process %d: %w", p.Pid, err)
	}
	if derr != nil {
		return nil, fmt.Errorf("ipc: DuplicateHandle of process %d: %w", p.Pid, derr)
	}
	return newProcessHandle(h, p.Pid)
}

// OpenProcessHandle opens process pid for a re-adopted backend: it succeeds
// only if the process running as pid started at startTime (the value
// ProcessStartTime or StartTime gave when it was recorded). The check is
// made on the opened handle, so it cannot race with pid reuse. A process
// that is gone, or a different process with the same pid, yields an error
// matching ErrNoProcess.
func OpenProcessHandle(pid int, startTime uint64) (*ProcessHandle, error) {
	h, err := openProcess(pid, processHandleRights)
	if err != nil {
		return nil, err
	}
	p, err := newProcessHandle(h, pid)
	if err != nil {
		return nil, err
	}
	if p.start != startTime {
		_ = p.Close()
		return nil, noProcess(pid, fmt.Errorf("started at %d, recorded %d: a different process", p.start, startTime))
	}
	return p, nil
}

// newProcessHandle takes ownership of h, closing it on error.
func newProcessHandle(h windows.Handle, pid int) (*ProcessHandle, error) {
	st, err := processStartTime(h, pid)
	if err != nil {
		_ = windows.CloseHandle(h)
		return nil, err
	}
	return &ProcessHandle{h: h, pid: pid, start: st}, nil
}

// PID returns the process id.
func (p *ProcessHandle) PID() int { return p.pid }

// StartTime returns the process's creation time, in the units of
// ProcessStartTime (compare for equality only).
func (p *ProcessHandle) StartTime() uint64 { return p.start }

// WithHandle runs fn with the process handle, which stays open until fn
// returns (Close waits). Pass it to fdpass.DuplicateIntoProcess and
// fdpass.CloseInProcess. fn must not keep the handle.
func (p *ProcessHandle) WithHandle(fn func(h windows.Handle) error) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("ipc: process %d: %w", p.pid, net.ErrClosed)
	}
	return fn(p.h)
}

// Exited reports whether the process has exited. It does not wait.
func (p *ProcessHandle) Exited() (bool, error) {
	var exited bool
	err := p.WithHandle(func(h windows.Handle) error {
		r, err := windows.WaitForSingleObject(h, 0)
		if err != nil {
			return fmt.Errorf("ipc: wait for process %d: %w", p.pid, err)
		}
		exited = r == windows.WAIT_OBJECT_0
		return nil
	})
	return exited, err
}

// ExecutablePath returns the path of the executable the process runs.
func (p *ProcessHandle) ExecutablePath() (string, error) {
	var path string
	err := p.WithHandle(func(h windows.Handle) error {
		var err error
		path, err = executablePath(h, p.pid)
		return err
	})
	return path, err
}

// Close closes the handle, after any WithHandle in progress returned.
func (p *ProcessHandle) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("ipc: process %d: %w", p.pid, net.ErrClosed)
	}
	p.closed = true
	return windows.CloseHandle(p.h)
}

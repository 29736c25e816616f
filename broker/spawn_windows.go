//go:build windows

package broker

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"unsafe"

	"github.com/portier/portier/internal/ipc"
	pb "github.com/portier/portier/wire/portierv1"
	"golang.org/x/sys/windows"
)

// procOS is what the broker holds of a backend process on Windows: a
// handle to the process itself, kept from the moment it was started (or,
// for a backend recorded by a previous broker, opened only once its
// registration passed the identity checks), and the job object its process
// tree runs in (none for a re-adopted backend: a job cannot be found again
// after the broker that created it exited).
//
// Handles are duplicated into ph, never into a pid looked up later: while
// the broker holds ph, the process object, and so its pid, cannot be
// reused, even after the process exits.
type procOS struct {
	osMu sync.Mutex
	ph   *ipc.ProcessHandle
	job  windows.Handle
}

// errProcessReleased: the broker no longer holds the backend's process,
// because it exited (or, re-adopted, never proved its identity).
var errProcessReleased = errors.New("broker: backend process handle released")

// errListenFDs: systemd's listen-fds convention passes a listening socket
// as descriptor 3, which has no Windows counterpart.
var errListenFDs = errors.New(`activation = "listen-fds" is not supported on Windows: a backend started there must use portier's backend package (activation = "portier")`)

// withProcess runs fn with the backend's process handle.
func (o *procOS) withProcess(fn func(h windows.Handle) error) error {
	o.osMu.Lock()
	ph := o.ph
	o.osMu.Unlock()
	if ph == nil {
		return errProcessReleased
	}
	err := ph.WithHandle(fn)
	if errors.Is(err, net.ErrClosed) {
		return errProcessReleased
	}
	return err
}

// startProcess starts cmd without a console window in a new process group
// and in a job object of its own, and records it in p.
//
// The job has no kill-on-close limit, so backends outlive the broker (the
// next one re-adopts them), yet the broker can stop a backend's whole tree
// (kill). The process is created suspended and resumed only once it is in
// the job, so nothing it starts escapes the job. Where the job cannot be
// assigned (a broker in a job that allows no nesting, before Windows 8),
// the backend runs without one and kill stops only its own process.
func startProcess(p *proc, cmd *exec.Cmd) (wait func() error, err error) {
	if p.listenFDs {
		return nil, errListenFDs
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags: windows.CREATE_NO_WINDOW | windows.CREATE_NEW_PROCESS_GROUP | windows.CREATE_SUSPENDED,
	}
	job, jerr := windows.CreateJobObject(nil, nil)
	if err := cmd.Start(); err != nil {
		if jerr == nil {
			_ = windows.CloseHandle(job)
		}
		return nil, err
	}
	fail := func(err error) (func() error, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if job != 0 {
			_ = windows.CloseHandle(job)
		}
		return nil, err
	}
	ph, err := ipc.HoldProcess(cmd.Process)
	if err != nil {
		return fail(err)
	}
	if jerr == nil {
		aerr := cmd.Process.WithHandle(func(h uintptr) {
			jerr = windows.AssignProcessToJobObject(job, windows.Handle(h))
		})
		if aerr != nil || jerr != nil {
			_ = windows.CloseHandle(job)
			job = 0
		}
	} else {
		job = 0
	}
	if err := resumeProcess(uint32(cmd.Process.Pid)); err != nil {
		_ = ph.Close()
		return fail(fmt.Errorf("resume the started process: %w", err))
	}
	p.pid, p.startTime = ph.PID(), ph.StartTime()
	p.osMu.Lock()
	p.ph, p.job = ph, job
	p.osMu.Unlock()
	return cmd.Wait, nil
}

// resumeProcess resumes the threads of pid, a process created suspended
// (it has one, its main thread). os/exec keeps no thread handle, so the
// thread is found in a snapshot of the system's threads.
func resumeProcess(pid uint32) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return fmt.Errorf("CreateToolhelp32Snapshot: %w", err)
	}
	defer windows.CloseHandle(snap)
	var te windows.ThreadEntry32
	te.Size = uint32(unsafe.Sizeof(te))
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, oerr := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if oerr != nil {
			return fmt.Errorf("OpenThread %d: %w", te.ThreadID, oerr)
		}
		_, rerr := windows.ResumeThread(th)
		_ = windows.CloseHandle(th)
		if rerr != nil {
			return fmt.Errorf("ResumeThread %d: %w", te.ThreadID, rerr)
		}
		resumed++
	}
	if resumed == 0 {
		return fmt.Errorf("no thread of process %d found", pid)
	}
	return nil
}

// kill stops p at once: its whole job (the backend and what it started),
// or, without a job, its own process.
func (p *proc) kill() {
	p.osMu.Lock()
	job := p.job
	p.osMu.Unlock()
	if job != 0 && windows.TerminateJobObject(job, 1) == nil {
		return
	}
	_ = p.withProcess(func(windows.Handle) error {
		// The held handle keeps the pid from being reused, so opening it
		// by pid reaches this process; the held handle lacks the
		// terminate right (ipc.ProcessHandle asks for no more than it uses).
		h, err := windows.OpenProcess(windows.PROCESS_TERMINATE, false, uint32(p.pid))
		if err != nil {
			return err
		}
		defer windows.CloseHandle(h)
		return windows.TerminateProcess(h, 1)
	})
}

// terminate stops p. Windows has no polite signal for a process without a
// console of the broker's; backends are asked to stop over their control
// connection (quiesce), and one without a connection is killed.
func (p *proc) terminate() { p.kill() }

// alive reports whether a re-adopted backend still runs: through the
// process handle once the broker holds one, else by its pid and start time.
func (p *proc) alive() bool {
	p.osMu.Lock()
	ph := p.ph
	p.osMu.Unlock()
	if ph == nil {
		return processMatches(p.pid, p.startTime)
	}
	exited, err := ph.Exited()
	return err == nil && !exited
}

// adoptOS opens the process of a re-adopted backend whose registration
// passed the identity checks, checking its start time on the opened handle
// (so a pid reused meanwhile is refused). Handles are duplicated into it
// from then on.
func (p *proc) adoptOS() error {
	p.osMu.Lock()
	defer p.osMu.Unlock()
	if p.ph != nil {
		return nil // a re-registration: held since the first
	}
	ph, err := ipc.OpenProcessHandle(p.pid, p.startTime)
	if err != nil {
		return &refusal{code: pb.ErrorCode_ERROR_PEER_REJECTED, reason: fmt.Sprintf("cannot hold the process of re-adopted backend pid %d: %v", p.pid, err)}
	}
	p.ph = ph
	return nil
}

// releaseOS closes the process and job handles; the job is not
// terminated (it has no kill-on-close limit).
func (o *procOS) releaseOS() {
	o.osMu.Lock()
	ph, job := o.ph, o.job
	o.ph, o.job = nil, 0
	o.osMu.Unlock()
	if ph != nil {
		_ = ph.Close()
	}
	if job != 0 {
		_ = windows.CloseHandle(job)
	}
}

// backendEndpoint is the name of a backend's own pipe: the broker's pipe
// name, the service's build (key) and a random part, so that nobody can
// create it first.
func backendEndpoint(socket, key, random string) string {
	return socket + "-be-" + key + "-" + random
}

// removeEndpoint does nothing: a pipe goes away with its last handle.
func removeEndpoint(string) {}

// backendEndpoints lists backend endpoints left behind: none on Windows,
// where a pipe disappears with its last handle.
func backendEndpoints(string) []string { return nil }

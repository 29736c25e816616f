//go:build windows

package client

import (
	"errors"
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// startDetached starts the broker without a console (DETACHED_PROCESS: no
// window, and it does not share the client's console, whose Ctrl-C or
// closing would otherwise reach it) in a new process group, with the
// system directory as its working directory so that it keeps no
// directory of the client's in use (Windows cannot delete a directory a
// process runs in).
//
// It asks to break away from the client's job object, so that a job that
// kills its processes when it closes (an IDE's or a CI runner's) does not
// take the per-user broker with it. A job that forbids breaking away makes
// CreateProcess fail with ERROR_ACCESS_DENIED; the broker is then started
// inside the job.
func startDetached(command func() *exec.Cmd) (*exec.Cmd, error) {
	const flags = windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS
	dir, _ := windows.GetSystemDirectory() // "" (the client's) if it fails
	start := func(flags uint32) (*exec.Cmd, error) {
		cmd := command()
		cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: flags, HideWindow: true}
		cmd.Dir = dir
		return cmd, cmd.Start()
	}
	cmd, err := start(flags | windows.CREATE_BREAKAWAY_FROM_JOB)
	if errors.Is(err, windows.ERROR_ACCESS_DENIED) {
		cmd, err = start(flags)
	}
	return cmd, err
}

// openBrokerLog: a named pipe has no directory beside it to keep a log in,
// so the started broker's output goes to the null device, and a broker
// that fails to come up is reported by its exit status alone.
func openBrokerLog(string) (*os.File, string, error) { return nil, "", nil }

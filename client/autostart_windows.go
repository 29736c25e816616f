//go:build windows

package client

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/portier/portier/internal/ipc"
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

// openBrokerLog opens broker.log for appending in the directory the broker
// keeps its files in (ipc.PipeStateDir: %LocalAppData%\portier\<pipe>),
// created if missing; the user's profile keeps it private.
func openBrokerLog(pipe string) (*os.File, string, error) {
	dir, err := ipc.PipeStateDir(pipe)
	if err != nil {
		return nil, "", fmt.Errorf("broker log: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("broker log: %w", err)
	}
	path := filepath.Join(dir, brokerLogName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("broker log: %w", err)
	}
	return f, path, nil
}

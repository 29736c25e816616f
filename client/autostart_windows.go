//go:build windows

package client

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// detach starts the broker in a new process group (Ctrl-C aimed at the
// client's console group does not reach it) without a console.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS,
		HideWindow:    true,
	}
}

// openBrokerLog: a named pipe has no directory to keep a log in, and the
// broker does not run on Windows yet; its output goes to the null device.
func openBrokerLog(string) (*os.File, string, error) { return nil, "", nil }

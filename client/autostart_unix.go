//go:build unix

package client

import (
	"os/exec"
	"syscall"
)

// detach puts the broker in its own session (and so its own process group,
// without a controlling terminal): a Ctrl-C or hangup aimed at the client's
// job does not reach it. Its working directory is / so it does not keep the
// client's directory (or mount) busy.
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
}

//go:build unix

package client

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/portier/portier/internal/ipc"
)

// startDetached starts the broker in its own session (and so its own
// process group, without a controlling terminal): a Ctrl-C or hangup aimed
// at the client's job does not reach it. Its working directory is / so it
// does not keep the client's directory (or mount) busy.
func startDetached(command func() *exec.Cmd) (*exec.Cmd, error) {
	cmd := command()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	return cmd, cmd.Start()
}

// openBrokerLog prepares the socket's directory as the broker would (private,
// created if missing) and opens broker.log in it for appending. The
// directory check comes first so that an unsafe directory is reported here,
// with its fix, rather than as a broker that never answers.
func openBrokerLog(sock string) (*os.File, string, error) {
	dir := filepath.Dir(sock)
	if err := ipc.EnsurePrivateDir(dir); err != nil {
		return nil, "", fmt.Errorf("socket directory: %w", err)
	}
	path := filepath.Join(dir, brokerLogName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, "", fmt.Errorf("broker log: %w", err)
	}
	return f, path, nil
}

//go:build linux

package broker

import (
	"errors"
	"os"

	"github.com/portier/portier/internal/ipc"
	"golang.org/x/sys/unix"
)

// pidfdWatch watches a process through a pidfd, which becomes readable when
// the process exits (a zombie has exited), whoever its parent is. The pidfd
// sits in the runtime's poller, so a waiting watch holds no thread.
type pidfdWatch struct{ f *os.File }

// newExitWatch watches the process pid that started at startTime. It
// returns errProcessGone when that process has already exited (or the pid
// names another process now), errNoExitWatch when the kernel has no pidfds
// (before Linux 5.3) or the pidfd cannot be polled.
func newExitWatch(pid int, startTime uint64) (exitWatch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, errProcessGone
	}
	if err != nil {
		return nil, errNoExitWatch
	}
	// The pidfd names whatever process has the pid now: it is the backend
	// only if that process started at startTime, checked after opening.
	if !ipc.ProcessRunning(pid, startTime) {
		unix.Close(fd)
		return nil, errProcessGone
	}
	return &pidfdWatch{f: os.NewFile(uintptr(fd), "pidfd")}, nil
}

func (w *pidfdWatch) wait() bool {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		// Called at once and after each wakeup: look without blocking.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(pfd, 0)
		exited = perr == nil && n > 0 && pfd[0].Revents&unix.POLLIN != 0
		return exited || (perr != nil && !errors.Is(perr, unix.EINTR))
	})
	return err == nil && exited
}

func (w *pidfdWatch) close() { _ = w.f.Close() }

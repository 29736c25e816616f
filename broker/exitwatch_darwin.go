//go:build darwin

package broker

import (
	"errors"
	"os"

	"github.com/portier/portier/internal/ipc"
	"golang.org/x/sys/unix"
)

// kqueueWatch watches a process with a kqueue of its own holding one
// EVFILT_PROC/NOTE_EXIT event, which fires when the process exits whoever
// its parent is. The kqueue descriptor sits in the runtime's poller, so a
// waiting watch holds no thread.
type kqueueWatch struct{ f *os.File }

// newExitWatch watches the process pid that started at startTime. It
// returns errProcessGone when that process has already exited (or the pid
// names another process now), errNoExitWatch when no kqueue can be had.
func newExitWatch(pid int, startTime uint64) (exitWatch, error) {
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, errNoExitWatch
	}
	unix.CloseOnExec(kq)
	var ev unix.Kevent_t
	unix.SetKevent(&ev, pid, unix.EVFILT_PROC, unix.EV_ADD|unix.EV_ONESHOT)
	ev.Fflags = unix.NOTE_EXIT
	if _, err := unix.Kevent(kq, []unix.Kevent_t{ev}, nil, nil); err != nil {
		unix.Close(kq)
		if errors.Is(err, unix.ESRCH) {
			return nil, errProcessGone
		}
		return nil, errNoExitWatch
	}
	// The event names whatever process has the pid now: it is the backend
	// only if that process started at startTime, checked after adding it.
	if !ipc.ProcessRunning(pid, startTime) {
		unix.Close(kq)
		return nil, errProcessGone
	}
	if err := unix.SetNonblock(kq, true); err != nil {
		unix.Close(kq)
		return nil, errNoExitWatch
	}
	return &kqueueWatch{f: os.NewFile(uintptr(kq), "kqueue-exit")}, nil
}

func (w *kqueueWatch) wait() bool {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return false
	}
	exited := false
	err = rc.Read(func(fd uintptr) bool {
		// Called at once and after each wakeup: look without blocking.
		var evs [1]unix.Kevent_t
		n, kerr := unix.Kevent(int(fd), nil, evs[:], &unix.Timespec{})
		exited = kerr == nil && n > 0
		return exited || (kerr != nil && !errors.Is(kerr, unix.EINTR))
	})
	return err == nil && exited
}

func (w *kqueueWatch) close() { _ = w.f.Close() }

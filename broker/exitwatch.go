package broker

import "errors"

// exitWatch notices the exit of a backend that is not the broker's child (a
// backend a previous broker started and this one re-adopted), which the
// broker cannot Wait for. The platform provides newExitWatch(pid,
// startTime) in exitwatch_<os>.go: a pidfd on Linux, kqueue's NOTE_EXIT on
// darwin, errNoExitWatch elsewhere (then the janitor's once-a-second poll
// and the control connection's drop are what notice it).
type exitWatch interface {
	// wait blocks until the process has exited (true) or the watch was
	// closed (false; also when the platform could not wait after all).
	wait() bool
	// close ends the watch; a wait in progress returns false. It may be
	// called more than once, and after wait returned.
	close()
}

var (
	// errProcessGone: the process to watch has exited already (or its pid
	// names another process now).
	errProcessGone = errors.New("broker: backend process has exited")
	// errNoExitWatch: the platform cannot watch a process that is not the
	// broker's child.
	errNoExitWatch = errors.New("broker: no exit watch for non-child processes on this platform")
)

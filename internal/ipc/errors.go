package ipc

import (
	"errors"
	"fmt"
	"time"
)

// ErrAlreadyRunning reports that another live process already serves the
// endpoint (or holds its singleton lock). For the broker this means "a broker
// for this user is running: use it", not a failure.
var ErrAlreadyRunning = errors.New("ipc: endpoint already served by a live process")

// ErrUnsupported reports that the operation is not available on this
// platform (for example ExecutablePath on darwin without cgo).
var ErrUnsupported = errors.New("ipc: not supported on this platform")

// ErrNoProcess reports that the process asked about does not exist (any more).
var ErrNoProcess = errors.New("ipc: no such process")

// Problem is the stable code of why a path is not safe to trust: the
// private directory around the broker's socket here, the services directory,
// definition files and the programs they name in servicedef (which
// re-exports these codes). The
// values are part of the API: portier doctor and tests switch on them, and a
// log line carries them.
type Problem string

// The Problem codes.
const (
	ProblemSymlink  Problem = "symlink"   // the path is a symbolic link
	ProblemNotDir   Problem = "not_dir"   // the path exists but is not a directory
	ProblemNotOwner Problem = "not_owner" // the path belongs to another user
	ProblemBadMode  Problem = "bad_mode"  // the path's mode lets group or others in
	// ProblemNotRegular: the path should be a regular file (a program to
	// run) and is not.
	ProblemNotRegular Problem = "not_regular"
)

// DirError reports that a directory meant to hold private endpoints is not
// safe to use. Detail says what was found and how to fix it.
type DirError struct {
	Path    string
	Problem Problem
	Detail  string
}

// Error formats the problem together with the fix.
func (e *DirError) Error() string {
	return fmt.Sprintf("ipc: unsafe private directory %s (%s): %s", e.Path, e.Problem, e.Detail)
}

// DefaultDialTimeout bounds Dial and DialPipe when ctx has no deadline, so
// that no dial waits forever.
const DefaultDialTimeout = 5 * time.Second

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

// Stable DirError.Problem codes. They are part of the API: portier doctor and
// tests switch on them.
const (
	ProblemSymlink  = "symlink"   // the path is a symbolic link
	ProblemNotDir   = "not_dir"   // the path exists but is not a directory
	ProblemNotOwner = "not_owner" // the directory belongs to another user
	ProblemBadMode  = "bad_mode"  // the directory is accessible to group or others
)

// DirError reports that a directory meant to hold private endpoints is not
// safe to use. Problem is one of the Problem* codes; Detail says what was
// found and how to fix it.
type DirError struct {
	Path    string
	Problem string
	Detail  string
}

// Error formats the problem together with the fix.
func (e *DirError) Error() string {
	return fmt.Sprintf("ipc: unsafe private directory %s (%s): %s", e.Path, e.Problem, e.Detail)
}

// DefaultDialTimeout bounds Dial and DialPipe when ctx has no deadline, so
// that no dial waits forever.
const DefaultDialTimeout = 5 * time.Second

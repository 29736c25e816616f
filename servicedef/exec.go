package servicedef

import (
	"errors"
	"fmt"

	"github.com/portier/portier/internal/ipc"
)

// ErrUnsafeExecutable matches every *ExecError: a definition's program could
// be replaced by someone other than the user, so the broker will not run it.
var ErrUnsafeExecutable = errors.New("servicedef: unsafe executable")

// ProblemNotRegular is an ExecError.Problem: command[0] does not resolve to
// a regular file.
const ProblemNotRegular = ipc.ProblemNotRegular

// ExecError explains why a definition's program is refused: the file
// command[0] resolves to, or a directory or symbolic link on the way to it,
// is not owned by the user or root, or can be written by group or others.
// Anyone who can change any of those decides what the broker runs as the
// user. It matches ErrUnsafeExecutable.
type ExecError struct {
	// Command is command[0] as the definition writes it.
	Command string
	// Path is the file, directory or symbolic link found unsafe.
	Path string
	// Problem is ProblemNotOwner, ProblemBadMode or ProblemNotRegular.
	Problem Problem
	// Reason says what was found.
	Reason string
	// Fix says what to do about it, as one line a person can follow.
	Fix string
}

// Error names the command, the unsafe path and the reason.
func (e *ExecError) Error() string {
	if e.Path == e.Command {
		return fmt.Sprintf("servicedef: command %s refused (%s): %s", e.Command, e.Problem, e.Reason)
	}
	return fmt.Sprintf("servicedef: command %s refused (%s): %s %s", e.Command, e.Problem, e.Path, e.Reason)
}

// Is makes errors.Is(err, ErrUnsafeExecutable) true.
func (e *ExecError) Is(target error) bool { return target == ErrUnsafeExecutable }

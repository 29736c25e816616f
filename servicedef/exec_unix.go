//go:build unix

package servicedef

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds the symbolic links followed while resolving a command,
// as the kernel's own limit does (Linux: 40).
const maxSymlinks = 40

// CheckExecutable checks the program a definition runs (command[0], an
// absolute path) the way the definitions themselves are checked, so that
// nobody but the user (or root) can choose what the broker executes as the
// user. It resolves the path one component at a time, following symbolic
// links, and checks everything it passes through:
//
//   - every directory, from / down: owned by the user or root, and not
//     writable by group or others unless it has the sticky bit (as /tmp
//     does), which keeps others from renaming or replacing the user's
//     entries in it;
//   - every symbolic link: owned by the user or root (its target is then
//     resolved and checked the same way);
//   - the file itself: a regular file owned by the user or root and not
//     writable by group or others.
//
// A violation is an *ExecError (matching ErrUnsafeExecutable) that names the
// offending path and a fix. Other failures (a missing file, a loop of
// links) are returned as they are; exec reports those anyway. Only the
// user and root can change what was checked, so the result cannot be made
// stale by anybody else between the check and the exec.
func CheckExecutable(command string) error {
	if !filepath.IsAbs(command) {
		return fmt.Errorf("servicedef: command %q is not an absolute path", command)
	}
	pending := splitPath(command)
	cur := "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return fmt.Errorf("servicedef: command %s: %w", command, err)
	}
	if err := checkExecDir(command, cur, fi); err != nil {
		return err
	}
	links := 0
	for len(pending) > 0 {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			// cur holds no symbolic links, so its lexical parent is its
			// real parent, which was checked on the way down.
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("servicedef: command %s: %w", command, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if links++; links > maxSymlinks {
				return fmt.Errorf("servicedef: command %s: too many levels of symbolic links", command)
			}
			if e := checkOwner(command, next, fi, "symbolic link"); e != nil {
				return e
			}
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("servicedef: command %s: %w", command, err)
			}
			if filepath.IsAbs(target) {
				cur = "/"
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		if len(pending) == 0 {
			return checkExecFile(command, next, fi)
		}
		if !fi.IsDir() {
			return fmt.Errorf("servicedef: command %s: %s is not a directory", command, next)
		}
		if err := checkExecDir(command, next, fi); err != nil {
			return err
		}
		cur = next
	}
	// The path ended in "." or "..": a directory, not a program.
	return &ExecError{Command: command, Path: cur, Problem: ProblemNotRegular,
		Reason: "is a directory, not a program", Fix: "point command[0] at the program file itself"}
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

func checkOwner(command, path string, fi fs.FileInfo, what string) *ExecError {
	owner, ok := ownerUID(fi)
	if !ok || owner == selfEUID || owner == 0 {
		return nil
	}
	return &ExecError{Command: command, Path: path, Problem: ProblemNotOwner,
		Reason: fmt.Sprintf("(a %s) is owned by uid %d, not by you (uid %d) or root, so its owner decides what the broker runs as you", what, owner, selfEUID),
		Fix:    fmt.Sprintf("install the backend where you or root own every directory (for example ~/.local/bin), or as root: chown %d %s", selfEUID, path)}
}

func checkExecDir(command, dir string, fi fs.FileInfo) error {
	if e := checkOwner(command, dir, fi, "directory"); e != nil {
		return e
	}
	if m := fi.Mode(); m.Perm()&0o022 != 0 && m&fs.ModeSticky == 0 {
		return &ExecError{Command: command, Path: dir, Problem: ProblemBadMode,
			Reason: fmt.Sprintf("(a directory) has mode %04o: group or others can replace what is in it, and so choose the program the broker runs as you", m.Perm()),
			Fix:    fixMode(dir, fi)}
	}
	return nil
}

func checkExecFile(command, path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &ExecError{Command: command, Path: path, Problem: ProblemNotRegular,
			Reason: "is not a regular file", Fix: "point command[0] at the program file itself"}
	}
	if e := checkOwner(command, path, fi, "program"); e != nil {
		return e
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return &ExecError{Command: command, Path: path, Problem: ProblemBadMode,
			Reason: fmt.Sprintf("(the program) has mode %04o: group or others can rewrite it, and so choose what the broker runs as you", m),
			Fix:    fixMode(path, fi)}
	}
	return nil
}

// fixMode is the fix for a group- or world-writable path: chmod by its
// owner, which for a root-owned path only root can do.
func fixMode(path string, fi fs.FileInfo) string {
	if owner, ok := ownerUID(fi); ok && owner != selfEUID {
		return fmt.Sprintf("as root: chmod go-w %s (or install the backend in a directory only you and root can write)", path)
	}
	return "chmod go-w " + path
}

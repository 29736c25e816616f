//go:build unix

package ipc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// EnsurePrivateDir makes sure dir exists and is safe to hold endpoints that
// only the current user may reach: it must not be a symlink, must be a
// directory, must be owned by the effective uid and must have mode exactly
// 0700. A missing dir (and missing parents) is created with mode 0700.
//
// An existing directory that fails a check is refused, never repaired: it
// may have been prepared by someone else (think /tmp/portier-$UID created by
// another user in a world-writable /tmp), and chmod'ing it would not undo
// what that person could already have placed inside. The error is a
// *DirError whose Detail says how to fix the problem. Only a directory this
// call created itself is chmod'ed to 0700, to undo an unusual umask.
//
// Only the last path element is checked; its parents (for example
// $XDG_RUNTIME_DIR) are trusted as configured.
func EnsurePrivateDir(dir string) error {
	dir = filepath.Clean(dir)
	created, err := mkdirPrivate(dir)
	if err != nil {
		return err
	}
	if created {
		// Mkdir applied the umask; a umask such as 0277 would leave
		// us a directory we cannot write. It is ours and brand new, so
		// setting the mode is safe.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("ipc: chmod new private directory: %w", err)
		}
	}
	return checkPrivateDir(dir)
}

// mkdirPrivate creates dir (and missing parents) with mode 0700 and reports
// whether dir itself was created by this call.
func mkdirPrivate(dir string) (bool, error) {
	err := os.Mkdir(dir, 0o700)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("ipc: create private directory: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return false, fmt.Errorf("ipc: create parent of private directory: %w", err)
	}
	err = os.Mkdir(dir, 0o700)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist): // lost a race with another process
		return false, nil
	default:
		return false, fmt.Errorf("ipc: create private directory: %w", err)
	}
}

// checkPrivateDir verifies an existing directory without modifying it.
// CheckPrivateDir reports whether an existing directory is private (the
// checks of EnsurePrivateDir) without creating or changing anything; for
// diagnostics such as portier doctor.
func CheckPrivateDir(dir string) error { return checkPrivateDir(filepath.Clean(dir)) }

func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("ipc: check private directory: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return &DirError{Path: dir, Problem: ProblemSymlink,
			Detail: fmt.Sprintf("it is a symbolic link, which could point anywhere; remove the link (rm %s) and retry", dir)}
	}
	if !fi.IsDir() {
		return &DirError{Path: dir, Problem: ProblemNotDir,
			Detail: fmt.Sprintf("it exists but is not a directory (%s); move it away and retry", fileKind(fi.Mode()))}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("ipc: check private directory %s: no ownership information", dir)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return &DirError{Path: dir, Problem: ProblemNotOwner,
			Detail: fmt.Sprintf("it is owned by uid %d, not by you (uid %d); have its owner or root remove it, or point XDG_RUNTIME_DIR at a directory you own", st.Uid, uid)}
	}
	if perm := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); perm != 0o700 {
		return &DirError{Path: dir, Problem: ProblemBadMode,
			Detail: fmt.Sprintf("its mode is %s but must be exactly 0700 so that only you can enter it; fix with: chmod 700 %s", modeString(fi.Mode()), dir)}
	}
	return nil
}

// modeString renders permission bits the way chmod takes them (e.g. 0755,
// 1777).
func modeString(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.String()
	}
}

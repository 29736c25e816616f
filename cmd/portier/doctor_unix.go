//go:build unix

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portier/portier/internal/ipc"
	"golang.org/x/sys/unix"
)

// minNoFile is the descriptor limit below which a busy broker runs into
// FD_PRESSURE: each pending handoff holds a descriptor.
const minNoFile = 4096

// checkEndpoint checks where the socket path came from and its directory.
func checkEndpoint(r *doctorReport, fromFlag bool) {
	checkSocketPath(r, fromFlag)
	checkSocketDir(r, filepath.Dir(r.Socket))
}

// checkLimits checks the limits a broker started from here gets.
func checkLimits(r *doctorReport) { checkNoFile(r) }

// runnable reports whether fi is a file the broker can execute.
func runnable(fi fs.FileInfo) bool { return !fi.IsDir() && fi.Mode()&0o111 != 0 }

// fileOwner returns the uid that owns fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := statOf(fi)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// checkSocketPath says where the socket path came from. Without
// XDG_RUNTIME_DIR every portier process falls back to /tmp/portier-$UID,
// which is right only if all of a user's processes agree.
func checkSocketPath(r *doctorReport, fromFlag bool) {
	uid := os.Geteuid()
	xdg, xdgSet := os.LookupEnv("XDG_RUNTIME_DIR")
	switch {
	case fromFlag:
		r.add("socket_path", checkOK, "", "socket %s (from --socket)", r.Socket)
	case os.Getenv("PORTIER_SOCKET") != "":
		r.add("socket_path", checkOK, "", "socket %s (from $PORTIER_SOCKET)", r.Socket)
	case xdg != "" && filepath.IsAbs(xdg):
		r.add("socket_path", checkOK, "", "socket %s (in $XDG_RUNTIME_DIR)", r.Socket)
	case xdgSet && xdg != "":
		r.add("socket_path", checkNote, "",
			"XDG_RUNTIME_DIR=%q is not an absolute path, so portier ignores it (as the XDG spec says) and uses %s; programs that see an absolute XDG_RUNTIME_DIR use $XDG_RUNTIME_DIR/portier/broker.sock instead",
			xdg, r.Socket)
	default:
		r.add("socket_path", checkNote, "",
			"XDG_RUNTIME_DIR is not set, so portier uses %s, its per-user fallback under /tmp. Programs that do have XDG_RUNTIME_DIR "+
				"(those of a login session, systemd user units) use $XDG_RUNTIME_DIR/portier/broker.sock (usually /run/user/%d/portier/broker.sock) "+
				"and would start or find another broker; set XDG_RUNTIME_DIR, or PORTIER_SOCKET, the same way for all of them",
			r.Socket, uid)
	}
}

// checkSocketDir checks the socket's directory without creating it.
func checkSocketDir(r *doctorReport, dir string) {
	err := ipc.CheckPrivateDir(dir)
	var de *ipc.DirError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.add("socket_dir", checkNote, "", "socket directory %s does not exist yet; portier serve creates it (0700)", dir)
	case errors.As(err, &de):
		what, fix := privateDirFix(de)
		r.add("socket_dir", checkProblem, fix, "socket directory %s is not private: %s", dir, what)
	case err != nil:
		r.add("socket_dir", checkProblem, "make sure you can reach "+dir+", or point --socket elsewhere", "socket directory %s cannot be checked: %v", dir, err)
	default:
		r.add("socket_dir", checkOK, "", "socket directory %s is private", dir)
	}
}

// privateDirFix splits a refused socket directory into what is wrong and
// the command that fixes it, so the fix line does not repeat the problem.
func privateDirFix(de *ipc.DirError) (what, fix string) {
	fi, _ := os.Lstat(de.Path)
	switch de.Problem {
	case ipc.ProblemSymlink:
		return "it is a symbolic link, which could point anywhere", fmt.Sprintf("rm %s (portier serve creates the directory again, mode 0700)", de.Path)
	case ipc.ProblemNotDir:
		return "it exists but is not a directory", fmt.Sprintf("move %s away; portier serve creates the directory", de.Path)
	case ipc.ProblemNotOwner:
		owner := "another user"
		if st, ok := statOf(fi); ok {
			owner = fmt.Sprintf("uid %d", st.Uid)
		}
		return fmt.Sprintf("it belongs to %s, not to you (uid %d)", owner, os.Geteuid()),
			"have its owner or root remove it, or set XDG_RUNTIME_DIR (or PORTIER_SOCKET) to a directory you own"
	case ipc.ProblemBadMode:
		mode := "not 0700"
		if fi != nil {
			mode = fmt.Sprintf("%04o", fi.Mode().Perm())
		}
		return fmt.Sprintf("its mode is %s, and only you may enter it (0700)", mode), "chmod 700 " + de.Path
	}
	return de.Detail, "remove it and let portier serve create it, or point --socket elsewhere"
}

func statOf(fi fs.FileInfo) (*syscall.Stat_t, bool) {
	if fi == nil {
		return nil, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

// checkNoFile checks the descriptor limit a broker started from here gets.
func checkNoFile(r *doctorReport) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < minNoFile {
		r.add("nofile", checkProblem, fmt.Sprintf("raise it (ulimit -n %d) in the shell or unit that starts portier serve", minNoFile),
			"descriptor limit %d is low for a broker (each pending connection holds one)", lim.Cur)
		return
	}
	r.add("nofile", checkOK, "", "descriptor limit %d", lim.Cur)
}

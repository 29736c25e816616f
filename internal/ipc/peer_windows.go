package ipc

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/windows"
)

// pipePeer is CheckPeer on Windows: it checks that the process at the other
// end of the named-pipe connection c runs as the same user as this process,
// and returns its process id. It reads nothing from c.
//
// For the server end of a pipe (a *PipeConn, or a go-winio accepted conn)
// the peer is the client, whose pid the kernel recorded when it opened the
// pipe (GetNamedPipeClientProcessId). For the client end it is the server,
// the process that created the pipe instance (GetNamedPipeServerProcessId):
// check it right after dialing, because after a handoff that process is the
// broker, which may have exited since.
//
// The peer's user is the user SID of its process token (OpenProcess with
// PROCESS_QUERY_LIMITED_INFORMATION, OpenProcessToken, GetTokenUser). This
// works whatever impersonation level the client allowed: the alternative,
// ImpersonateNamedPipeClient, needs the client's consent
// (SECURITY_IDENTIFICATION or more; go-winio dials with
// SECURITY_ANONYMOUS), works on the server end only and ties the calling
// goroutine to an impersonating OS thread. A process whose token we may not
// open is treated as another user's.
//
// Pid reuse: the pid names the peer only while the peer lives; once the
// process is open, the pid cannot be reused. A client that exits before
// pipePeer opens it, and whose pid a new process takes over in that
// window, would be judged by the new process's user. Such a client is gone
// and gets no answer, and on Windows (unlike Wine) the pipe's owner-only
// DACL keeps other users from connecting in the first place; the check is
// the second line of defense. (PeekNamedPipe cannot close the window: it
// succeeds on a pipe whose client left while its bytes are unread, which
// is exactly when the check runs.)
//
// Errors: one matching ErrForeignPeer for another user, one matching
// ErrNoProcess if the peer is gone, others if the check could not be made.
// Every error means "refuse the connection".
func pipePeer(c net.Conn) (pid int, err error) {
	err = withPipeHandle(c, func(h windows.Handle) error {
		var p uint32
		var flags uint32
		if err := windows.GetNamedPipeInfo(h, &flags, nil, nil, nil); err != nil {
			return fmt.Errorf("ipc: GetNamedPipeInfo: %w", err)
		}
		if flags&windows.PIPE_SERVER_END != 0 {
			if err := windows.GetNamedPipeClientProcessId(h, &p); err != nil {
				return fmt.Errorf("ipc: GetNamedPipeClientProcessId: %w", err)
			}
		} else if err := windows.GetNamedPipeServerProcessId(h, &p); err != nil {
			return fmt.Errorf("ipc: GetNamedPipeServerProcessId: %w", err)
		}
		pid = int(p)
		return checkPeerProcess(pid)
	})
	if err != nil {
		return pid, err
	}
	return pid, nil
}

// withPipeHandle runs fn with c's pipe handle: through SyscallConn().Control
// where c offers it (PipeConn, which keeps Close waiting meanwhile), else
// through go-winio's side-effect-free Fd.
func withPipeHandle(c net.Conn, fn func(h windows.Handle) error) error {
	if sc, ok := c.(syscall.Conn); ok {
		rc, err := sc.SyscallConn()
		if err != nil {
			return fmt.Errorf("ipc: %w", err)
		}
		var fnErr error
		if err := rc.Control(func(fd uintptr) { fnErr = fn(windows.Handle(fd)) }); err != nil {
			return fmt.Errorf("ipc: %w", err)
		}
		return fnErr
	}
	h, err := pipeHandle(c)
	if err != nil {
		return err
	}
	return fn(h)
}

// checkPeerProcess checks that process pid runs as the current user.
func checkPeerProcess(pid int) error {
	ph, err := openProcess(pid, windows.PROCESS_QUERY_LIMITED_INFORMATION)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(ph) //nolint:errcheck // nothing to do about it
	var tok windows.Token
	if err := windows.OpenProcessToken(ph, windows.TOKEN_QUERY, &tok); err != nil {
		return fmt.Errorf("ipc: open token of peer process %d: %w", pid, err)
	}
	defer tok.Close() //nolint:errcheck // nothing to do about it
	tu, err := tok.GetTokenUser()
	if err != nil {
		return fmt.Errorf("ipc: user of peer process %d: %w", pid, err)
	}
	self, err := currentUserSID()
	if err != nil {
		return err
	}
	if err := sameSID(tu.User.Sid, self); err != nil {
		return fmt.Errorf("%w (pid %d)", err, pid)
	}
	return nil
}

// sameSID returns nil if peer and self are the same SID, else an error
// matching ErrForeignPeer that names both.
func sameSID(peer, self *windows.SID) error {
	if peer == nil || self == nil {
		return fmt.Errorf("%w: no SID to compare", ErrForeignPeer)
	}
	if !windows.EqualSid(peer, self) {
		return fmt.Errorf("%w: the peer runs as %s, this process as %s", ErrForeignPeer, peer, self)
	}
	return nil
}

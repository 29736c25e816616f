package ipc

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// PeerCred returns the kernel-reported credentials of c's peer
// (LOCAL_PEERCRED for the uid, LOCAL_PEERPID for the pid). Call it before
// reading any byte, so nothing the peer sends influences the decision. It
// uses the socket through SyscallConn, leaving c usable.
func PeerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("ipc: peer credentials: %w", err)
	}
	var (
		xu         *unix.Xucred
		pid        int
		xerr, perr error
	)
	if err := rc.Control(func(fd uintptr) {
		xu, xerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		pid, perr = unix.GetsockoptInt(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	}); err != nil {
		return Cred{}, fmt.Errorf("ipc: peer credentials: %w", err)
	}
	if xerr != nil {
		return Cred{}, fmt.Errorf("ipc: LOCAL_PEERCRED: %w", xerr)
	}
	if perr != nil {
		// Very old kernels lack LOCAL_PEERPID; the uid alone is still
		// trustworthy, the pid is then unknown.
		pid = 0
	}
	return Cred{UID: int(xu.Uid), PID: pid}, nil
}

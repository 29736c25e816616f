package ipc

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// PeerCred returns the kernel-reported credentials of c's peer (SO_PEERCRED:
// the credentials at connect or socketpair time). Call it before reading any
// byte, so nothing the peer sends influences the decision. It uses the
// socket through SyscallConn, leaving c usable.
func PeerCred(c *net.UnixConn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("ipc: peer credentials: %w", err)
	}
	var (
		uc   *unix.Ucred
		uerr error
	)
	if err := rc.Control(func(fd uintptr) {
		uc, uerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Cred{}, fmt.Errorf("ipc: peer credentials: %w", err)
	}
	if uerr != nil {
		return Cred{}, fmt.Errorf("ipc: SO_PEERCRED: %w", uerr)
	}
	return Cred{UID: int(uc.Uid), PID: int(uc.Pid)}, nil
}

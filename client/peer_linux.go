package client

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// checkBrokerPeer verifies that the process serving the broker socket runs as
// our effective uid (SO_PEERCRED, recorded by the kernel at connect time).
func checkBrokerPeer(uc *net.UnixConn) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("peer credentials: %w", cerr)
	}
	if want := selfEUID; int(cred.Uid) != want {
		return fmt.Errorf("socket is served by uid %d, not by this user (uid %d)", cred.Uid, want)
	}
	return nil
}

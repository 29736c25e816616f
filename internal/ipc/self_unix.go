//go:build unix

package ipc

import (
	"fmt"
	"net"
	"os"
)

func checkPeer(c net.Conn, self Self) (Cred, error) {
	// Not cached: a process may change its uids (syscall.Setuid applies to
	// every thread), and the check must see the ones in force.
	return checkPeerAs(c, self, selfUID(self))
}

// selfUID is this process's uid under rule self.
func selfUID(self Self) int {
	if self == EffectiveUID {
		return os.Geteuid()
	}
	return os.Getuid()
}

// checkPeerAs is checkPeer against the uid want, this process's uid under
// rule self.
func checkPeerAs(c net.Conn, self Self, want int) (Cred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Cred{}, fmt.Errorf("ipc: CheckPeer: %T is not a Unix domain socket", c)
	}
	cred, err := PeerCred(uc)
	if err != nil {
		return Cred{}, err
	}
	if cred.UID != want {
		return cred, &ForeignPeerError{Peer: cred, Self: self, Want: want}
	}
	return cred, nil
}
